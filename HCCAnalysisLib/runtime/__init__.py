"""How the library meets the machine it runs on, one concern per module:

- `logs`: standard `logging` under the `HCCAnalysisLib` logger (messages on stderr, or a file);
- `progress`: tqdm progress bars that appear only on a terminal and stay quiet under `-q`;
- `threads`: OpenMP's wait policy and torch's thread count, chosen unless the user chose;
- `extras`: the optional dependencies of each method family, and the error naming the pip extra.

Every module here is cheap to import (no torch, no numpy), so the CLI can set things up before
the heavy libraries load.
"""

from __future__ import annotations

"""Qt-free logic behind the Slicer panel: choices, jobs, dependencies."""

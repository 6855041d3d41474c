"""The data types every method shares: Case, Cohort, Sample, Prediction, and shared preprocessing."""

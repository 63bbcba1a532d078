"""Studies: each a function over its own small config, built on the one training loop."""

from l2dynamics.studies.theory import TheoryResult, TheoryStudy, run_theory_study

__all__ = ["TheoryResult", "TheoryStudy", "run_theory_study"]

"""The runner: pairs of the transfer matrix, the results store, executors and progress.

`PairSpec` names one fine-tuning run; `run_pairs` runs many of them (skipping finished ones, one claim
per run, failures isolated) on local processes or Ray; `RunStore` holds their records. Pair
functions report training progress with `bench.runner.progress.report(step, total, loss)`.
"""

from bench.runner.executors import EXECUTORS, FailedRun, Summary, run_pairs
from bench.runner.pairs import PairSpec
from bench.runner.store import Claim, RunStore

__all__ = ["EXECUTORS", "Claim", "FailedRun", "PairSpec", "RunStore", "Summary", "run_pairs"]

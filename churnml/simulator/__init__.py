"""The music-streaming app simulator: event log, campaigns and exact ground truth.

The simulation itself (users, engagement, lapses, recall campaigns and the
exact truth) lives in :mod:`churnml.simulator.world`; see its docstring for
the process. New layers of the world (channels, subscriptions) get their own
module in this package and are re-exported here, so ``from churnml.simulator
import ...`` stays the public way in.
"""

from churnml.simulator.subscriptions import SubscriptionConfig
from churnml.simulator.world import (
    EVENT_TYPES,
    SimulationConfig,
    SimulationResult,
    TruthSpec,
    simulate,
)

__all__ = ["EVENT_TYPES", "SimulationConfig", "SimulationResult", "SubscriptionConfig", "TruthSpec", "simulate"]

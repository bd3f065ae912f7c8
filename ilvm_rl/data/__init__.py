"""What every module's models read: the layout of observations and actions, the replay of
transitions, and the running statistics that scale them. Nothing here knows an RL library."""

from ilvm_rl.data.replay import SegmentBatch, TransitionBatch, TransitionStore
from ilvm_rl.data.spaces import ActionEncoder, ObservationFlattener, TransitionCodec, UnsupportedSpaceError
from ilvm_rl.data.statistics import ObservationNormaliser, RunningMeanStd

__all__ = [
    "ActionEncoder",
    "ObservationFlattener",
    "ObservationNormaliser",
    "RunningMeanStd",
    "SegmentBatch",
    "TransitionBatch",
    "TransitionCodec",
    "TransitionStore",
    "UnsupportedSpaceError",
]

"""Named process exit codes, shared by the supervisor, the actors and the tests."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1  # an unexpected error; the traceback is in the log
    CONFIG = 2  # bad config or arguments, or the run dir is held by another supervisor
    START_TIMEOUT = 3  # an actor did not report RUNNING within start_timeout_ms
    RESTART_INTENSITY = 4  # more than max_restarts within period_s: gave up, stopped everything
    ORPHANED = 5  # an actor whose supervisor died

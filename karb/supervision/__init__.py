"""The supervision tree: the supervisor (``supervisor``), its restart policy (``restart``), the run
dir it owns (``rundir``), its status HTTP server (``status_http``), the checks made before any
actor starts (``preflight``) and the command line (``cli``, run by ``supervisor.py``).

The bus layer every actor uses (``karb.messages``, ``karb.topics``, ``karb.bus``, ``karb.shm``)
stays at the top of the package; nothing outside the supervisor imports this package except
tools that need to know whether a supervisor holds a run dir.
"""

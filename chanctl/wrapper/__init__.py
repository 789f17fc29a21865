"""``chanctl run``: a job wrapper that makes a channel the job's address.

``runner.run_job`` is the entry point; the modules are its parts: ``spawn`` (process group,
exec shim, death signal), ``pump`` (pipes in), ``spool`` (bounded buffer, spill file),
``lines`` and ``publisher`` (messages out, exactly once), ``commands`` and ``control``
(steering), ``job`` (acting on the job), ``session`` (liveness), ``supervisor`` (signals and
reaping).
"""

"""The training worker: RQ jobs that train styles, and the process that runs them.

* :func:`worker.jobs.train_style` — the job the service enqueues by dotted path;
* :class:`worker.settings.WorkerSettings` — ``STYLIZE_*`` configuration;
* ``python -m worker`` — the worker process (:mod:`worker.__main__`).

Importing this package is cheap: submodules load torch only when imported.
"""

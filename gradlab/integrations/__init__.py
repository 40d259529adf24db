"""Bridges from gradlab's records to the tools researchers train with; each imports the recorder and the
analysis, never the other way round.

- `metrics`: the summary of a recorded step that `gradlab.watch(model, log=...)` hands any `(dict, step)`
  logger (wandb.log, mlflow.log_metrics, accelerator.log, a Lightning logger's log_metrics)
- `tensorboard`: a `log=` adapter over a SummaryWriter (with a custom-scalars layout) and the export of run
  directories to event files (`gradlab export tensorboard`); needs `gradlab[tensorboard]`
- `lightning`: `GradlabCallback` for `lightning.Trainer(callbacks=[...])`; needs `gradlab[lightning]`
"""

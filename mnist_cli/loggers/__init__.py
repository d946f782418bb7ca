"""Where a run's metrics go besides its own files (metrics.jsonl, metrics.csv and summary.json, which
are always written): logger=<name> picks a tracker, conf/logger/<name>.yaml names its class here
with `_target_`: base.Tracker (none: nowhere else), tensorboard.TensorBoard (each epoch's
metrics), or an experiment tracker that holds the whole job as one of its runs, mlflow.MLflow or
wandb.WandB. The job starts it before the stage runs and finishes it with the summary."""

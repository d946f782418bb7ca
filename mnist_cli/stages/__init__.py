"""The stages: one module per `mnist <stage>`, named by its conf/stage/<name>.yaml (runner:):
pretrain.py, finetune.py, evaluate.py, predict.py, explain.py, export.py, serve.py, data.py.
job.py is the Hydra task that calls them; train_and_test.py is what pretrain and finetune share,
source.py the checkpoint a stage starts from, resume.py a resumed run's config."""

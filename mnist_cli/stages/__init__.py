"""The stages: one module per `mnist <stage>`, whose run(ctx) conf/stage/<name>.yaml names under
stage.run: pretrain.py, finetune.py, eval.py, predict.py, explain.py, export.py, serve.py, data.py.
job.py is the Hydra task that calls them with a StageContext (context.py); training.py is what
pretrain and finetune share, resume.py a resumed run's config."""

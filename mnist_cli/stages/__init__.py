"""The stages: one module per `mnist <stage>`, whose run(ctx) conf/stage/<name>.yaml names under
stage.run: pretrain.py, finetune.py, eval.py, predict.py, explain.py, export.py, serve.py, data.py,
select.py, label.py, audit.py. job.py is the Hydra task that calls them with a StageContext
(context.py); training.py is what pretrain and finetune share (and cross_validation.py, the audit's
K-fold training), resume.py a resumed run's config."""

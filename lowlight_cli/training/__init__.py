"""Training: a :class:`TrainConfig` in, a run folder that describes itself out.

One file per concern, in the order a run meets them:

    config.py       TrainConfig, resolve() from the model's recipe, lr_at(step), what a resume may change
    data.py         images decoded into memory, the split by scene, random batches
    pairs.py        synthetic exposure pairs: darken() (the darkening model), lit_mask(), the mixture's kinds
    engine.py       how a step runs: device and DDP process, fp32 / channels-last / bf16, the weight average
    validate.py     validation sets, validate(), selection_score(): which checkpoint is kept and why
    checkpoints.py  the run folder: config.json, train.log, last.pt, best.pt, export()
    loop.py         fit(): setup, loop, validation, save

Nothing is imported here, so that ``training.pairs`` (numpy alone) loads without torch.
"""

"""transfer_core: the Transfer Studio engine (no UI code: the app, the CLI and tests all drive it).

Sub-packages, each importing only those listed before it (checked by `lint-imports`, see .importlinter):
    core        config.TrainConfig, events, device, metrics, advice
    models      backbones.get_backbone / build_network, weights, preprocessing, freezing, augment
    data        datasets.scan_dataset -> DatasetReport (scancache: unchanged files not reopened), uploads,
                datarefs, imagecache, classbuilder (classes made by hand, own copies for corrections)
    runstore    runfiles (every file name of a run folder), runs.RunFolder / list_runs
    inference   predict.load_model / predict, calibration, gradcam, novelty, evaluation.evaluate_run
    training    trainer.Trainer (the loop), callbacks, features (cache), optim, eta, failures
    methods     L2-SP, distillation, domain adaptation: callbacks_for(config)
    workflows   train.train / resume, lr_finder.lr_find, baseline
    quality     checks.check_dataset (duplicates, leaks, suspected labels), review_actions (move, exclude, undo)
    results     compare, bundle, export
    service     jobs.default_queue() (fair order; in-process or on Ray: executors, rayjobs), jobstore, workspaces
    cli         the command line (python -m transfer_core)
"""

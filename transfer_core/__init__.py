"""transfer_core: the Transfer Studio engine (no UI code: the app, the CLI and tests all drive it).

Main entry points:
    list_backbones(), get_backbone(name), build_network(...)   backbones.py
    scan_dataset(path) -> DatasetReport                          datasets.py
    TrainConfig(...)                                             config.py
    train(config, runs_dir=..., callbacks=[...], stop=Event())   trainer.py
    default_queue().submit(config, runs_dir, owner)             jobs.py (one job at a time, for the app)
    list_runs(runs_dir), RunFolder(path)                         runs.py
    load_model(run_dir), predict(run_dir, images, k)             predict.py
    evaluate_run(run_dir)                                        evaluation.py
"""

"""Sweeps whose trials run at once on Ray Tune (`python -m kon_ray.sweep`; README "Sweeps").

space.py reads the command line (pure), config.py is `sweep.*`, trial.py is one trial (a Ray Tune function
trainable around the training stage's boosting loop), tuner.py runs a population's trials (Tuner, ASHAScheduler,
OptunaSearch), summary.py and page.py turn the trial records into sweep_summary.json and sweep.html, track.py logs
the parent and child runs to MLflow from the driver, driver.py and __main__.py wire them.
"""

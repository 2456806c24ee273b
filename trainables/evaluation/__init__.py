"""Scores of forecasts and the baselines they are compared with.

Modules:
    scores: error and skill scores in target (and price) units; spike metrics.
    baselines: persistence, drift, AR(p), GARCH(1,1) and HAR-RV forecasts on a prepared group.

Nothing is re-exported here: the main functions share their modules' names
(``scores.scores``, ``baselines.baselines``), and re-exporting them would shadow the modules.
"""

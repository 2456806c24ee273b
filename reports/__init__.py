"""Leaderboards, HTML reports and the winners registry, read from run directories on disk.

Reads what ``cluster`` wrote; never trains and never imports ``cluster``.

Modules:
    collect: a run directory as :class:`~reports.collect.Run` / ``Trial`` objects and its leaderboard.
    build: ``RUN_DIR/report/`` (leaderboard.csv/json, summary.json, self-contained index.html).
    charts: the report's Plotly figures and the in-memory Optuna study behind two of them.
    backtest: long/flat backtest of a winner's test-span forecasts against buy-and-hold.
    confirmation: read and rank a confirmation (``cluster.confirm`` trains it).
    statistics: Diebold–Mariano, Hansen's SPA, the model confidence set, deflated Sharpe (pure).
    forecast_tests: each group's test-span losses, aligned, and the tests the verdicts rest on.
    registry: the winners registry (export, load) and next-candle forecasts from it.
"""

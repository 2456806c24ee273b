"""The winners registry: each (asset, timeframe)'s best model, published atomically.

Modules:
    winners: pick each group's winner, export it into the registry, load the current one.
    forecast: next-candle forecast from a registry winner, features rebuilt as in training.
    _versions: version folders, crash recovery and the atomic link swap (private).
"""

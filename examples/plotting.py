"""What the example scripts share for their figures."""


def pyplot():
    """matplotlib.pyplot on a file-only backend, or None (with a message) when it is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return None
    return plt

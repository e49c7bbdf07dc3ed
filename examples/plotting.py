"""What the example scripts share for their outputs: figures and the Markdown table."""
from pathlib import Path


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


def save_figure(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write_table(text: str, path: Path) -> None:
    """Prints a Markdown table and writes it to path, creating the folder."""
    print(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")

"""Charts of the campaign loop (matplotlib figures; the assets turn them into metadata)."""

from __future__ import annotations

import pandas as pd


def variant_share_chart(sends: pd.DataFrame):
    """One panel per campaign: each copy variant's share of the day's sends, over the
    days of ``sends`` (send_date, campaign, variant, sends). A bandit that learns shows
    one line rising away from the others."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    campaigns = sorted(sends["campaign"].unique())
    fig, axes = plt.subplots(len(campaigns), 1, figsize=(7, 2.4 * max(len(campaigns), 1)), squeeze=False, sharex=True)
    for ax, campaign in zip(axes[:, 0], campaigns):
        rows = sends[sends["campaign"] == campaign]
        share = rows.pivot_table(index="send_date", columns="variant", values="sends", aggfunc="sum", fill_value=0)
        share = share.div(share.sum(axis=1), axis=0)
        for variant in share.columns:
            ax.plot(pd.to_datetime(share.index), share[variant], marker="o", markersize=3, label=variant)
        ax.set(title=f"{campaign}: share of sends by copy variant", ylabel="share", ylim=(0, 1))
        ax.legend(fontsize=7, loc="upper left", ncol=2)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig

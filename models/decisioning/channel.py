"""Channel preference: per customer, the smoothed engagement probability on each consented channel.

For a customer and channel with ``n`` sends, ``o`` engaged sends (opened or clicked) and ``c`` clicked
ones, the estimates are Beta-binomial posterior means around the population's rate on that channel:

    p_open  = (o + prior_strength * P_open)  / (n + prior_strength)
    p_click = (c + prior_strength * P_click) / (n + prior_strength)

Below ``min_sends`` sends the answer still carries these (mostly prior) values but says
``status = "not_enough_data"``, and such channels rank after every channel with enough data. A
channel no one was ever sent to has no population rate: its probabilities are NaN. Only the channels
the caller says are consented are ever returned (consent is a hard filter, decided by the caller's
contact state; see :mod:`models.decisioning.policy`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Self

import numpy as np
import pandas as pd

from features.contract import Channel, Col
from features.errors import InputDataError, KairosError
from models.base import Estimator, check_fitted

CHANNELS: tuple[str, ...] = tuple(c.value for c in Channel)


class ChannelStatus(StrEnum):
    OK = "ok"
    NOT_ENOUGH_DATA = "not_enough_data"


@dataclass(frozen=True)
class ChannelScore:
    """One consented channel's engagement estimate for one customer."""

    channel: str
    p_open: float
    p_click: float
    sends: int
    status: str
    rank: int


class ChannelPreference(Estimator):
    """Smoothed per-channel engagement probabilities, over consented channels only.

    Args:
        min_sends: Fewest sends on a channel for an ``ok`` status.
        prior_strength: Pseudo-sends of the population rate in each estimate.
        rank_by: ``open`` (engagement: opened or clicked) or ``click``.
    """

    def __init__(self, min_sends: int = 5, prior_strength: float = 10.0, rank_by: str = "open") -> None:
        self.min_sends = min_sends
        self.prior_strength = prior_strength
        self.rank_by = rank_by

    def fit(self, messages: pd.DataFrame) -> Self:
        """Count sends, engaged sends and clicks per customer and channel.

        Args:
            messages: ``customer_key``, ``channel``, ``opened_at``, ``clicked_at`` (one row per send).

        Raises:
            InputDataError: a column is missing, a key is missing, or a channel is unknown.
        """
        if self.min_sends < 1:
            raise KairosError(f"min_sends must be >= 1, got {self.min_sends}")
        if not self.prior_strength > 0:
            raise KairosError(f"prior_strength must be > 0, got {self.prior_strength}")
        if self.rank_by not in ("open", "click"):
            raise KairosError(f"rank_by must be 'open' or 'click', got {self.rank_by!r}")
        missing = [c for c in (Col.CUSTOMER_KEY, Col.CHANNEL, Col.OPENED_AT, Col.CLICKED_AT) if c not in messages]
        if missing:
            raise InputDataError(f"messages lacks column(s) {missing}")
        if messages[Col.CUSTOMER_KEY].isna().any():
            raise InputDataError(f"messages.{Col.CUSTOMER_KEY} has missing values")
        channel = messages[Col.CHANNEL].astype(object)
        bad = ~channel.isin(CHANNELS)
        if bad.any():
            example = channel[bad].iloc[0]
            raise InputDataError(f"messages.{Col.CHANNEL} has value(s) outside {list(CHANNELS)}, e.g. {example!r}")
        frame = pd.DataFrame(
            {
                Col.CUSTOMER_KEY: messages[Col.CUSTOMER_KEY].astype(str).to_numpy(),
                Col.CHANNEL: channel.astype(str).to_numpy(),
                "engaged": (messages[Col.OPENED_AT].notna() | messages[Col.CLICKED_AT].notna()).to_numpy(),
                "clicked": messages[Col.CLICKED_AT].notna().to_numpy(),
            }
        )
        counts = frame.groupby([Col.CUSTOMER_KEY, Col.CHANNEL]).agg(
            sends=("engaged", "size"), opens=("engaged", "sum"), clicks=("clicked", "sum")
        )
        self.counts_ = counts.reset_index().astype({"sends": np.int64, "opens": np.int64, "clicks": np.int64})
        totals = self.counts_.groupby(Col.CHANNEL)[["sends", "opens", "clicks"]].sum().reindex(list(CHANNELS))
        totals = totals.fillna(0)
        sends = totals["sends"].to_numpy(dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.population_ = pd.DataFrame(
                {
                    Col.CHANNEL: list(CHANNELS),
                    "sends": sends.astype(np.int64),
                    "p_open": np.where(sends > 0, totals["opens"].to_numpy(dtype=float) / sends, np.nan),
                    "p_click": np.where(sends > 0, totals["clicks"].to_numpy(dtype=float) / sends, np.nan),
                }
            )
        self._index()
        return self

    def _index(self) -> None:
        self._counts = {
            (str(k), str(c)): (int(s), int(o), int(x))
            for k, c, s, o, x in self.counts_[[Col.CUSTOMER_KEY, Col.CHANNEL, "sends", "opens", "clicks"]].itertuples(
                index=False
            )
        }
        pop = self.population_.set_index(Col.CHANNEL)
        self._prior = {c: (float(pop.loc[c, "p_open"]), float(pop.loc[c, "p_click"])) for c in CHANNELS}

    def _check_fitted(self) -> None:
        check_fitted(self, "counts_")

    def scores(self, customer_key: str, consented: Iterable[str]) -> list[ChannelScore]:
        """The consented channels, ranked (``ok`` ones first, each group by probability, descending).

        Args:
            customer_key: The customer (unknown: population rates, ``not_enough_data``).
            consented: Channels the customer may be contacted on now; others are never returned.

        Raises:
            KairosError: an unknown channel name.
        """
        self._check_fitted()
        allowed = list(dict.fromkeys(consented))
        unknown = [c for c in allowed if c not in CHANNELS]
        if unknown:
            raise KairosError(f"unknown channel(s) {unknown}; expected some of {list(CHANNELS)}")
        rows = []
        for channel in allowed:
            sends, opens, clicks = self._counts.get((str(customer_key), channel), (0, 0, 0))
            prior_open, prior_click = self._prior[channel]
            k = self.prior_strength
            p_open = (opens + k * prior_open) / (sends + k)
            p_click = (clicks + k * prior_click) / (sends + k)
            status = ChannelStatus.OK if sends >= self.min_sends and not math.isnan(p_open) else None
            rows.append((channel, p_open, p_click, sends, (status or ChannelStatus.NOT_ENOUGH_DATA).value))
        by_open = self.rank_by == "open"

        def order(row: tuple[str, float, float, int, str]) -> tuple[int, float, int]:
            value = row[1] if by_open else row[2]
            return (0 if row[4] == ChannelStatus.OK else 1, -value if not math.isnan(value) else math.inf, -row[3])

        ranked = sorted(rows, key=order)
        return [ChannelScore(c, po, pc, s, st, rank + 1) for rank, (c, po, pc, s, st) in enumerate(ranked)]

    def table(self, consented: Mapping[str, Iterable[str]]) -> pd.DataFrame:
        """:meth:`scores` for many customers: one row per customer and consented channel.

        Args:
            consented: Customer key -> channels consented now (a customer with none gets no row).
        """
        rows = [
            {Col.CUSTOMER_KEY: key, **score.__dict__}
            for key, channels in consented.items()
            for score in self.scores(key, channels)
        ]
        columns = [Col.CUSTOMER_KEY, "channel", "p_open", "p_click", "sends", "status", "rank"]
        return pd.DataFrame(rows, columns=columns)

    def to_frames(self) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
        """Counts and population rates as Parquet-ready frames, parameters as a JSON-ready dict."""
        self._check_fitted()
        counts = self.counts_.copy()
        counts[Col.CUSTOMER_KEY] = counts[Col.CUSTOMER_KEY].astype("string")
        counts[Col.CHANNEL] = counts[Col.CHANNEL].astype("string")
        return {"channel_counts": counts, "channel_population": self.population_.copy()}, {"params": self.get_params()}

    @classmethod
    def from_frames(cls, frames: Mapping[str, pd.DataFrame], meta: Mapping[str, Any]) -> Self:
        model = cls(**meta["params"])
        counts = frames["channel_counts"].copy()
        counts[Col.CUSTOMER_KEY] = counts[Col.CUSTOMER_KEY].astype(str)
        counts[Col.CHANNEL] = counts[Col.CHANNEL].astype(str)
        model.counts_ = counts
        model.population_ = frames["channel_population"].copy()
        model._index()
        return model

"""One customer's erasure as the API performs it: everything :func:`bundles.erasure.erase_offline` erases,
plus this process's memory (online store, send log, segments, personal data, loaded models) and the shared
online store and send log in Redis. The receipt is written into the data home and answered."""

from __future__ import annotations

import logging
import threading
from typing import Any

from bundles.erasure import erase_offline
from features.erasure import write_receipt
from features.online import OnlineStoreUnavailable
from serving.state import Services

log = logging.getLogger("kairos.serving.erasure")

_ONE_AT_A_TIME = threading.Lock()  # two erasures in one process would race on the tombstones and the files


def erase_customer(services: Services, customer_id: str) -> dict[str, Any]:
    """Erase ``customer_id`` (and every id joined to it) everywhere this replica can reach; the receipt.

    The receipt holds no personal data: counts, file and model names, versions. ``complete`` is False when
    something still holds the customer (``residue``) or the shared store could not be reached; the
    tombstone already hides the customer, and the erasure can be run again.
    """
    s = services.settings
    with _ONE_AT_A_TIME:
        offline = erase_offline(s.data_home, customer_id, tracking_uri=s.tracking_uri, cache_dirs=[s.model_cache_dir])
        person, receipt = offline.person, offline.receipt
        keys, ids = list(person.keys), list(person.ids)
        errors: list[str] = []
        try:
            receipt["online_store"] = {"backend": services.store.kind, "entries": services.store.erase(keys, ids)}
        except OnlineStoreUnavailable:
            receipt["online_store"] = {"backend": services.store.kind, "entries": None}
            errors.append("online store unavailable")
        try:
            receipt["send_log"] = services.contacts.erase(keys)
        except OnlineStoreUnavailable:
            receipt["send_log"] = None
            errors.append("send log unavailable")
        receipt["in_memory"] = {
            "segments": services.segments.forget(keys),
            "personal_data": services.personal.forget(keys),
        }
        # The loaded bundles still hold the customer: load the re-signed versions now (a failure keeps the
        # serving bundle, and the tombstone keeps the customer unknown until it succeeds).
        outcomes = services.reload(force=True)
        receipt["models_reloaded"] = [{"model": o.model, "outcome": o.outcome, "version": o.version} for o in outcomes]
        receipt["errors"] = errors
        receipt["complete"] = offline.complete and not errors
        write_receipt(s.data_home, receipt)
    log.info(
        "customer erased",
        extra={
            "erasure_id": receipt["erasure_id"],
            "complete": receipt["complete"],
            "tombstones": receipt["tombstones_added"],
        },
    )
    return receipt

"""Identity resolution: literal fixtures with known partitions, then invariance properties."""

from __future__ import annotations

import random
from collections.abc import Iterable

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.contract import Col
from features.errors import InputDataError
from features.identity import (
    DEVELOPMENT_SECRET,
    IdentityResult,
    Pseudonymizer,
    RefusedCol,
    customer_key_for,
    resolve_identities,
)
from features.identity import rekey as rekey_with

COLUMNS = (Col.CUSTOMER_ID, Col.EMAIL, Col.PHONE, Col.LOYALTY_ID, Col.WEB_CLIENT_ID, Col.COUNTRY)


DEV = Pseudonymizer.for_development()


def resolve(customers: pd.DataFrame, **kwargs: object) -> IdentityResult:
    """resolve_identities with the development pseudonymizer."""
    return resolve_identities(customers, pseudonymizer=DEV, **kwargs)  # type: ignore[arg-type]


def rekey(table: pd.DataFrame, mapping: pd.DataFrame) -> pd.DataFrame:
    return rekey_with(table, mapping, DEV)


def key(customer_id: str) -> str:
    return customer_key_for(customer_id, DEV)


def customers(*rows: tuple[object, ...]) -> pd.DataFrame:
    """Rows of (customer_id, email, phone, loyalty_id, web_client_id, country); short rows pad with None."""
    padded = [tuple(row) + (None,) * (len(COLUMNS) - len(row)) for row in rows]
    return pd.DataFrame(padded, columns=list(COLUMNS), dtype=object)


def partition(mapping: pd.DataFrame) -> set[frozenset[str]]:
    groups = mapping.groupby(Col.CUSTOMER_KEY)[Col.CUSTOMER_ID].agg(frozenset)
    return set(groups.tolist())


def groups(*clusters: Iterable[str]) -> set[frozenset[str]]:
    return {frozenset(c) for c in clusters}


class TestLinks:
    def test_email_case_and_whitespace_merge(self) -> None:
        result = resolve(customers(("a", " Jane.Doe@Example.COM"), ("b", "jane.doe@example.com ")))
        assert partition(result.mapping) == groups("ab")

    def test_uk_phone_spellings_merge(self) -> None:
        table = customers(
            ("a", None, "+44 20 7946 0958"),
            ("b", None, "020 7946 0958", None, None, "GB"),
            ("c", None, "(020) 7946-0958", None, None, "United Kingdom"),
        )
        assert partition(resolve(table).mapping) == groups("abc")

    def test_default_region_reads_national_numbers(self) -> None:
        table = customers(("a", None, "(202) 555-0100"), ("b", None, "+1 202 555 0100"))
        assert partition(resolve(table, default_region="US").mapping) == groups("ab")
        assert partition(resolve(table, default_region="GB").mapping) == groups("a", "b")

    def test_transitive_chain(self) -> None:
        table = customers(
            ("A", "ann@example.com", None),
            ("B", "ANN@example.com", "07700 900123"),
            ("C", None, "+447700900123"),
            ("D", "someone.else@example.com", "07700 900999"),
        )
        result = resolve(table)
        assert partition(result.mapping) == groups("ABC", "D")
        report = result.report()
        assert report["records"] == 4
        assert report["clusters"] == 2
        assert report["clusters_merged"] == 1
        assert report["cluster_sizes"] == {1: 1, 3: 1}
        assert report["links_by_kind"][Col.EMAIL] == 1
        assert report["links_by_kind"][Col.PHONE] == 1
        assert report["refused_merges"] == 0

    def test_same_loyalty_card_merges(self) -> None:
        table = customers(("a", "a@example.com", None, " L-1 "), ("b", "b@example.com", None, "L-1"))
        assert partition(resolve(table).mapping) == groups("ab")

    def test_same_web_client_id_merges(self) -> None:
        table = customers(("a", None, None, None, "GA1.2.3"), ("b", None, None, None, "GA1.2.3"))
        assert partition(resolve(table).mapping) == groups("ab")

    def test_malformed_and_placeholder_values_do_not_link(self) -> None:
        table = customers(
            ("a", "not-an-email", "123", "n/a"),
            ("b", "not-an-email", "123", "N/A"),
            ("c", "x@@example.com", "abc", "0"),
            ("d", "x@@example.com", "abc", "0"),
        )
        result = resolve(table)
        assert partition(result.mapping) == groups("a", "b", "c", "d")
        assert result.report()["invalid_by_kind"][Col.EMAIL] == 4

    def test_value_shared_by_too_many_records_links_nothing(self) -> None:
        table = customers(*((f"r{i}", "noemail@shop.example") for i in range(6)))
        assert len(partition(resolve(table, max_shared=5).mapping)) == 6
        everyone = groups([f"r{i}" for i in range(6)])
        assert partition(resolve(table, max_shared=None).mapping) == everyone
        assert resolve(table, max_shared=5).report()["ignored_values_by_kind"][Col.EMAIL] == 1


class TestStrongIdGuard:
    def test_placeholder_card_neither_links_nor_blocks(self) -> None:
        # "999" on many records is a till default, not a card: it must not veto the e-mail link
        table = customers(
            ("a", "x@example.com", None, "L-1"),
            ("b", "x@example.com", None, "999"),
            *((f"z{i}", None, None, "999") for i in range(4)),
        )
        result = resolve(table, max_shared=3)
        assert partition(result.mapping) == groups("ab", *([f"z{i}"] for i in range(4)))
        assert result.report()["ignored_values_by_kind"][Col.LOYALTY_ID] == 1

    def test_spouses_sharing_a_phone_stay_apart_and_are_listed(self) -> None:
        table = customers(
            ("wife", "jo@example.com", "07700 900123", "L-1"),
            ("husband", "sam@example.com", "+44 7700 900123", "L-2"),
        )
        result = resolve(table)
        assert partition(result.mapping) == groups(["wife"], ["husband"])
        refused = result.refused
        assert len(refused) == 1
        row = refused.iloc[0]
        assert {row[RefusedCol.CUSTOMER_ID_A], row[RefusedCol.CUSTOMER_ID_B]} == {"wife", "husband"}
        assert row[RefusedCol.LINK_KIND] == Col.PHONE
        assert row[RefusedCol.CONFLICT] == Col.LOYALTY_ID
        # the review list names the link by a pseudonym, never by the number itself
        text = refused.to_csv()
        assert "7700" not in text and "@" not in text
        assert result.report()["refused_merges"] == 1

    def test_guard_holds_across_a_chain(self) -> None:
        # a - b by email, b - c by phone; a and c hold different cards: one of the two links must go
        table = customers(
            ("a", "x@example.com", None, "L-1"),
            ("b", "x@example.com", "07700 900123"),
            ("c", None, "07700 900123", "L-2"),
        )
        result = resolve(table)
        # strong ids and e-mail come before phone: b joins a, and the phone link to c is refused
        assert partition(result.mapping) == groups("ab", "c")
        assert result.refused[RefusedCol.LINK_KIND].tolist() == [Col.PHONE]

    def test_several_strong_ids(self) -> None:
        table = customers(("a", None, None, "L-1", "W-1"), ("b", None, None, "L-1", "W-2"))
        both = resolve(table, strong_ids=(Col.LOYALTY_ID, Col.WEB_CLIENT_ID))
        assert partition(both.mapping) == groups("a", "b")
        assert both.refused[RefusedCol.CONFLICT].tolist() == [Col.WEB_CLIENT_ID]
        assert partition(resolve(table).mapping) == groups("ab")

    def test_no_strong_ids_merges_everything_linked(self) -> None:
        table = customers(("a", None, "07700 900123", "L-1"), ("b", None, "07700 900123", "L-2"))
        assert partition(resolve(table, strong_ids=()).mapping) == groups("ab")


class TestKeysAndMapping:
    def test_key_is_hash_of_smallest_id(self) -> None:
        result = resolve(customers(("b", "x@example.com"), ("a", "X@example.com"), ("c", None)))
        keys = dict(zip(result.mapping[Col.CUSTOMER_ID], result.mapping[Col.CUSTOMER_KEY], strict=True))
        assert keys == {"a": key("a"), "b": key("a"), "c": key("c")}
        assert key("a").startswith("ck_") and len(key("a")) == 19
        assert result.mapping[Col.CUSTOMER_ID].tolist() == ["a", "b", "c"]

    def test_missing_optional_columns(self) -> None:
        table = pd.DataFrame({Col.CUSTOMER_ID: ["a", "b"], Col.EMAIL: ["x@example.com", "x@example.com"]})
        assert partition(resolve(table).mapping) == groups("ab")

    def test_empty_table(self) -> None:
        result = resolve(pd.DataFrame({Col.CUSTOMER_ID: pd.Series([], dtype=object)}))
        assert len(result.mapping) == 0
        assert result.report()["clusters"] == 0

    @pytest.mark.parametrize("ids", [["a", "a"], ["a", None], ["a", " "]])
    def test_bad_customer_ids_are_refused(self, ids: list[str | None]) -> None:
        with pytest.raises(InputDataError, match=Col.CUSTOMER_ID):
            resolve(pd.DataFrame({Col.CUSTOMER_ID: ids}))

    def test_no_customer_id_column(self) -> None:
        with pytest.raises(InputDataError):
            resolve(pd.DataFrame({Col.EMAIL: ["x@example.com"]}))


class TestRekey:
    def test_rekey_keeps_every_row_in_order(self) -> None:
        mapping = resolve(customers(("a", "x@example.com"), ("b", "x@example.com"))).mapping
        orders = pd.DataFrame(
            {"order_id": ["o1", "o2", "o3", "o4", "o5"], Col.CUSTOMER_ID: ["b", None, "zz", "a", ""]},
            index=[5, 4, 3, 2, 1],
        )
        out = rekey(orders, mapping)
        assert list(out.columns) == ["order_id", Col.CUSTOMER_ID, Col.CUSTOMER_KEY]
        assert list(out.index) == [5, 4, 3, 2, 1]
        assert out["order_id"].tolist() == ["o1", "o2", "o3", "o4", "o5"]
        keys = out[Col.CUSTOMER_KEY]
        assert keys.iloc[0] == keys.iloc[3] == key("a")
        assert pd.isna(keys.iloc[1]) and pd.isna(keys.iloc[4])
        assert keys.iloc[2] == key("zz")  # consistent with a singleton cluster

    def test_rekey_is_idempotent(self) -> None:
        mapping = resolve(customers(("a", "x@example.com"), ("b", "x@example.com"))).mapping
        once = rekey(pd.DataFrame({Col.CUSTOMER_ID: ["a", "b"], "v": [1, 2]}), mapping)
        twice = rekey(once, mapping)
        pd.testing.assert_frame_equal(once, twice)

    def test_rekey_needs_customer_id(self) -> None:
        with pytest.raises(InputDataError):
            rekey(pd.DataFrame({"x": [1]}), pd.DataFrame({Col.CUSTOMER_ID: [], Col.CUSTOMER_KEY: []}))


# ---- properties -------------------------------------------------------------------------------------

_EMAILS = ["ann@example.com", " ANN@example.com", "bob@example.com", "cy@example.org", "bad@@x", None, None]
_PHONES = ["07700 900001", "+44 7700 900001", "07700 900002", "(020) 7946-0958", "123", None, None]
_CARDS = ["L1", "L2", "L3", None, None, None]
_WEB = ["W1", "W2", None, None, None]


@st.composite
def customer_tables(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(min_value=0, max_value=25))
    id_text = st.text("abcdefghij0123456789", min_size=1, max_size=4)
    ids = draw(st.lists(id_text, min_size=n, max_size=n, unique=True))
    rows = [
        (
            cid,
            draw(st.sampled_from(_EMAILS)),
            draw(st.sampled_from(_PHONES)),
            draw(st.sampled_from(_CARDS)),
            draw(st.sampled_from(_WEB)),
            draw(st.sampled_from(["GB", "United Kingdom", None])),
        )
        for cid in ids
    ]
    return customers(*rows)


_PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class TestProperties:
    @_PROPERTY
    @given(customer_tables(), st.randoms(use_true_random=False))
    def test_invariant_to_row_order(self, table: pd.DataFrame, rnd: random.Random) -> None:
        order = list(range(len(table)))
        rnd.shuffle(order)
        shuffled = table.iloc[order].reset_index(drop=True)
        first, second = resolve(table), resolve(shuffled)
        pd.testing.assert_frame_equal(first.mapping, second.mapping)
        pd.testing.assert_frame_equal(first.refused, second.refused)
        assert first.report() == second.report()

    @_PROPERTY
    @given(customer_tables())
    def test_idempotent(self, table: pd.DataFrame) -> None:
        first = resolve(table)
        pd.testing.assert_frame_equal(first.mapping, resolve(table).mapping)
        rekeyed = rekey(table, first.mapping)
        pd.testing.assert_frame_equal(first.mapping, resolve(rekeyed).mapping)

    @_PROPERTY
    @given(customer_tables())
    def test_no_record_lost_and_guard_holds(self, table: pd.DataFrame) -> None:
        result = resolve(table)
        mapping = result.mapping
        assert sorted(mapping[Col.CUSTOMER_ID]) == sorted(table[Col.CUSTOMER_ID])
        assert mapping[Col.CUSTOMER_KEY].notna().all()
        cards = table.set_index(Col.CUSTOMER_ID)[Col.LOYALTY_ID]
        per_cluster = mapping.assign(card=mapping[Col.CUSTOMER_ID].map(cards).to_numpy())
        assert (per_cluster.groupby(Col.CUSTOMER_KEY)["card"].nunique() <= 1).all()
        # a refused link always joins two different clusters
        refused = result.refused
        assert (refused[RefusedCol.KEY_A] != refused[RefusedCol.KEY_B]).all()

    @_PROPERTY
    @given(customer_tables())
    def test_records_sharing_a_card_are_together(self, table: pd.DataFrame) -> None:
        mapping = resolve(table).mapping
        keyed = rekey(table, mapping)
        with_card = keyed[keyed[Col.LOYALTY_ID].notna()]
        assert (with_card.groupby(Col.LOYALTY_ID)[Col.CUSTOMER_KEY].nunique() == 1).all()


class TestPseudonyms:
    """Keys and review-list hashes are keyed (HMAC): the source ids alone do not give them away."""

    SECRET_A = "a-long-test-secret-number-one"
    SECRET_B = "a-long-test-secret-number-two"

    def test_same_id_and_secret_give_the_same_key_and_another_secret_another(self) -> None:
        a, a_again, b = Pseudonymizer(self.SECRET_A), Pseudonymizer(self.SECRET_A), Pseudonymizer(self.SECRET_B)
        assert a.customer_key("c1") == a_again.customer_key("c1")
        assert a.customer_key("c1") != b.customer_key("c1")
        assert a.customer_key("c1") != a.customer_key("c2")
        assert a.key_id == a_again.key_id != b.key_id

    def test_the_key_is_not_a_plain_hash_of_the_id_and_keeps_its_format(self) -> None:
        import hashlib
        import hmac

        ids = [f"customer-{i}" for i in range(50)]
        for p in (Pseudonymizer(self.SECRET_A), DEV):
            for cid in ids:
                k = p.customer_key(cid)
                assert k != "ck_" + hashlib.sha256(cid.encode()).hexdigest()[:16]
                assert k == "ck_" + hmac.new(p.secret.encode(), cid.encode(), hashlib.sha256).hexdigest()[:16]
                assert len(k) == 19 and int(k[3:], 16) >= 0

    def test_resolution_and_review_list_follow_the_secret(self) -> None:
        import hashlib

        # spouses share a phone and hold two cards: one refused merge on the review list
        table = customers(("a", None, "+44 20 7946 0958", "L-1"), ("b", None, "+44 20 7946 0958", "L-2"))
        one = resolve_identities(table, pseudonymizer=Pseudonymizer(self.SECRET_A))
        two = resolve_identities(table, pseudonymizer=Pseudonymizer(self.SECRET_B))
        assert partition(one.mapping) == partition(two.mapping)  # the secret changes names, never clusters
        assert set(one.mapping[Col.CUSTOMER_KEY]).isdisjoint(set(two.mapping[Col.CUSTOMER_KEY]))
        h1, h2 = one.refused[RefusedCol.LINK_VALUE_HASH].iloc[0], two.refused[RefusedCol.LINK_VALUE_HASH].iloc[0]
        assert h1 != h2
        plain = hashlib.sha256(f"{Col.PHONE}\x1f+442079460958".encode()).hexdigest()[:12]
        assert plain not in (h1, h2)

    @pytest.mark.parametrize("secret", ["", "short", " " * 40])
    def test_a_weak_secret_is_refused(self, secret: str) -> None:
        with pytest.raises(ValueError, match="at least 16 characters"):
            Pseudonymizer(secret)

    def test_the_public_development_secret_is_refused_outside_development(self) -> None:
        with pytest.raises(ValueError, match="development"):
            Pseudonymizer(DEVELOPMENT_SECRET)
        assert Pseudonymizer.for_development().development

    def test_the_secret_is_never_shown(self) -> None:
        p = Pseudonymizer(self.SECRET_A)
        assert self.SECRET_A not in repr(p) and self.SECRET_A not in str(p)

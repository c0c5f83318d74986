"""Large nodes on pubsub.localhost (XEP-0060 §6.5.4, XEP-0059 result set management): 1,000
items published concurrently in batches, then read back page by page, newest first, with
nothing lost or repeated; and the default max_items bound."""

from __future__ import annotations

import asyncio

from pubsub_support import (
    create,
    entry,
    item_ids,
    item_list,
    items,
    node_name,
    owner,
    owner_entry,
    publish,
    pubsub_user,
    rsm_of,
)

BATCH = 100


async def publish_batches(publishers, node: str, total: int, prefix: str = "i") -> list[list[str]]:
    """Publishes `total` items, BATCH at a time concurrently, one batch after the other,
    the publishers taking turns (the server paces each account's publishing, so one alone
    would be slow); returns the ids of each batch (a later batch is newer than every
    earlier one)."""
    batches = []
    for start in range(0, total, BATCH):
        client = publishers[(start // BATCH) % len(publishers)]
        ids = [f"{prefix}{n:04d}" for n in range(start, min(start + BATCH, total))]
        await asyncio.gather(*(publish(client, node, entry(f"item {i}"), i) for i in ids))
        batches.append(ids)
    return batches


async def big_node(server, im, **config):
    """alice owns a new node (with `config`); bob is its second publisher (§4.1)."""
    alice = await pubsub_user(server, im, "alice")
    bob = await pubsub_user(server, im, "bob")
    node = node_name("big")
    await create(alice, node, **config)
    await owner(alice, "affiliations", node, children=[owner_entry("affiliation", bob.bare, "publisher")])
    return alice, bob, node


async def test_paging_through_1000_items_returns_each_once_newest_first(server, im):
    alice, bob, node = await big_node(server, im, max_items=1000)
    carol = await pubsub_user(server, im, "carol")
    batches = await publish_batches((alice, bob), node, 1000)

    pages, after = [], None
    while True:
        rsm = {"max": 100} if after is None else {"max": 100, "after": after}
        result = await items(carol, node, rsm=rsm)
        ids = item_ids(result)
        if not ids:
            break
        info = rsm_of(result)
        # XEP-0059 §2.2: <first/> and <last/> name the page's ends, <count/> the whole set.
        assert (info["first"], info["last"], info["count"]) == (ids[0], ids[-1], "1000"), str(info)
        pages.append(ids)
        after = ids[-1]
        assert len(pages) <= 11, "paging does not end"

    assert [len(p) for p in pages] == [100] * 10
    seen = [i for page in pages for i in page]
    assert len(set(seen)) == 1000 and set(seen) == {i for batch in batches for i in batch}
    # Newest first: every item of a later batch comes before every item of an earlier one.
    position = {item_id: n for n, item_id in enumerate(seen)}
    for older, newer in zip(batches, batches[1:]):
        assert max(position[i] for i in newer) < min(position[i] for i in older)
    # The payloads come with the pages.
    first_page = item_list(await items(carol, node, rsm={"max": 3}))
    assert all(text == f"item {item_id}" for item_id, text in first_page)


async def test_max_items_on_a_large_node_returns_the_most_recent(server, im):
    alice, bob, node = await big_node(server, im, max_items="max")
    await publish_batches((alice, bob), node, 300)
    # The last few published one by one, so their order is known exactly.
    for item_id in ("last-3", "last-2", "last-1"):
        await publish(alice, node, entry(item_id), item_id)
    assert item_ids(await items(alice, node, max_items=3)) == ["last-1", "last-2", "last-3"]
    assert rsm_of(await items(alice, node, rsm={"max": 10}))["count"] == "303"


async def test_the_default_max_items_keeps_the_newest_256(server, im):
    alice, bob, node = await big_node(server, im)
    batches = await publish_batches((alice, bob), node, 300)
    kept = []
    after = None
    while True:
        rsm = {"max": 100} if after is None else {"max": 100, "after": after}
        ids = item_ids(await items(alice, node, rsm=rsm))
        if not ids:
            break
        kept += ids
        after = ids[-1]
        assert len(kept) <= 300, "paging does not end"
    assert len(kept) == 256
    # The newest batches are all kept; what went is from the oldest one.
    assert set(batches[1]) | set(batches[2]) <= set(kept)
    assert set(kept) - set(batches[1]) - set(batches[2]) <= set(batches[0])

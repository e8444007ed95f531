"""Acceptance test: the real amoCRM client aioamocrm 0.1.1 against a running Voronka.

Driven by the Rust test `amocrm::the_aioamocrm_client_works_unchanged`, which starts Voronka,
makes an account with a long-lived token, an OAuth integration and a fresh authorization code,
and passes them in the environment:

  VORONKA_BASE, VORONKA_TOKEN, VORONKA_CLIENT_ID, VORONKA_CLIENT_SECRET, VORONKA_REDIRECT_URI,
  VORONKA_CODE

Every step asserts what it got back; the first failure ends the run with a traceback.
"""

import asyncio
import os
import time

from aioamocrm import (
    AmoCRMClient,
    Company,
    Contact,
    Embedded,
    Lead,
    LongLivedToken,
    MemoryTokenStorage,
    Note,
    NotFoundError,
    OAuth2,
    Tag,
    Task,
)

BASE = os.environ["VORONKA_BASE"]


def step(name):
    print(f"ok: {name}", flush=True)


async def scenario():
    async with AmoCRMClient(
        base_url=BASE, auth=LongLivedToken(os.environ["VORONKA_TOKEN"]), rate_limit=None
    ) as amo:
        acc = await amo.account.get(with_=["users_groups", "task_types"])
        assert acc.id and acc.subdomain, acc
        step("account")

        pipelines = await amo.pipelines.list()
        assert len(pipelines) == 1, pipelines
        [p] = pipelines
        stages = await amo.pipelines.statuses(p.id)
        ids = [s.id for s in stages]
        assert 142 in ids and 143 in ids, ids
        assert stages[0].type == 1, stages[0]
        step("pipelines and statuses")

        [ref] = await amo.leads.create([Lead(name="Website order", price=5000, pipeline_id=p.id)])
        assert ref.id and ref.request_id == "0", ref
        lead = await amo.leads.get(ref.id, with_=["contacts"])
        assert lead.name == "Website order" and lead.price == 5000, lead
        assert lead.pipeline_id == p.id and lead.status_id not in (142, 143), lead
        step("create and get a lead")

        await amo.leads.update([Lead(id=ref.id, status_id=142, pipeline_id=p.id)])
        won = [l async for l in amo.leads.iterate(
            filter={"statuses": [{"pipeline_id": p.id, "status_id": 142}]})]
        assert [l.id for l in won] == [ref.id], won
        assert (await amo.leads.get(ref.id)).closed_at, "a won lead is closed"
        step("update to won, filter by status")

        # Pagination: 7 more leads with budgets 1000..7000, read 3 at a time.
        more = await amo.leads.create(
            [Lead(name=f"Lead {i}", price=i * 1000, pipeline_id=p.id) for i in range(1, 8)])
        assert len(more) == 7
        page = await amo.leads.get_page(1, limit=50, order={"updated_at": "desc"},
                                        filter={"price": {"from": 1000, "to": 10000}})
        prices = sorted(l.price for l in page)
        assert prices == [1000, 2000, 3000, 4000, 5000, 5000, 6000, 7000], prices
        paged = [l async for l in amo.leads.iterate(limit=3, filter={"price": {"from": 1000, "to": 7000}})]
        assert len(paged) == 8 and len({l.id for l in paged}) == 8, [l.id for l in paged]
        step("list with filters, order and pagination")

        c = Contact(name="Ivan Petrov")
        c.set_field("PHONE", "+79123456789", enum_code="WORK")
        [cx] = await amo.leads.create_complex([Lead(
            name="Complex", price=1,
            embedded=Embedded(contacts=[c], companies=[Company(name="ACME")], tags=[Tag(name="site")]))])
        assert cx.id and cx.contact_id and cx.company_id, cx
        complex_lead = await amo.leads.get(cx.id, with_=["contacts"])
        assert [t.name for t in complex_lead.embedded.tags] == ["site"], complex_lead
        step("complex create")

        await amo.leads.link(ref.id, "contacts", cx.contact_id, metadata={"is_main": True})
        links = await amo.leads.links(ref.id)
        assert any(l.to_entity_id == cx.contact_id and l.to_entity_type == "contacts" for l in links), links
        step("links")

        [n] = await amo.leads.notes.create([Note.common(ref.id, "Call back after 6 pm")])
        assert n.id, n
        notes = [x async for x in amo.leads.notes.iterate(entity_id=ref.id)]
        assert [x.text for x in notes] == ["Call back after 6 pm"], notes
        step("notes")

        [t] = await amo.tasks.create([Task(text="Call", entity_type="leads", entity_id=ref.id,
                                           task_type_id=1, complete_till=int(time.time()) + 3600)])
        await amo.tasks.complete(t.id, result="done")
        done = await amo.tasks.get(t.id)
        assert done.is_completed and done.result.text == "done", done
        step("tasks: create and complete")

        ev = await amo.request("GET", "events", params={"limit": 100, "filter": {"entity": "lead"}})
        assert ev is None or ev["_embedded"]["events"] is not None
        step("events")

        hook = await amo.request("POST", "webhooks",
                                 json={"destination": "http://127.0.0.1:9/h", "settings": ["add_lead"]})
        assert hook["destination"] == "http://127.0.0.1:9/h" and hook["settings"] == ["add_lead"], hook
        hooks = await amo.request("GET", "webhooks")
        assert [h["destination"] for h in hooks["_embedded"]["webhooks"]] == ["http://127.0.0.1:9/h"]
        step("webhooks")

        try:
            await amo.leads.get(999999999)
            raise AssertionError("a lead that is not there was found")
        except NotFoundError:
            pass
        step("not found")


async def oauth_scenario():
    oauth = OAuth2(os.environ["VORONKA_CLIENT_ID"], os.environ["VORONKA_CLIENT_SECRET"],
                   os.environ["VORONKA_REDIRECT_URI"], storage=MemoryTokenStorage())
    async with AmoCRMClient(base_url=BASE, auth=oauth, rate_limit=None) as amo:
        tokens = await amo.exchange_code(os.environ["VORONKA_CODE"])
        assert tokens.access_token.count(".") == 2, "JWT-shaped"
        assert tokens.refresh_token
        acc = await amo.account.get()
        assert acc.id
    step("oauth code exchange")


asyncio.run(scenario())
asyncio.run(oauth_scenario())
print("acceptance: all steps passed")

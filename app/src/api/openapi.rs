//! The OpenAPI 3.0 document of the public API (`/api/v4/openapi.json`) and a page that renders
//! it (`/api/docs`). Built here, next to the handlers, so that it is reviewed with them; the
//! Schemathesis run (`scripts/api-fuzz`) checks the answers against it.

use std::sync::OnceLock;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use askama::Template;
use serde_json::{Map, Value, json};

use crate::web::ctx::Ctx;
use crate::web::error::PageResult;
use crate::web::pages::html;

fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn nullable(ty: &str) -> Value {
    json!({ "type": ty, "nullable": true })
}

fn int() -> Value {
    json!({ "type": "integer" })
}

fn string() -> Value {
    json!({ "type": "string" })
}

fn links() -> Value {
    r("Links")
}

fn list_of(key: &str, item: &str) -> Value {
    json!({
        "type": "object",
        "required": ["_embedded"],
        "properties": {
            "_page": int(),
            "_total_items": int(),
            "_links": { "type": "object" },
            "_embedded": {
                "type": "object",
                "required": [key],
                "properties": { key: { "type": "array", "items": r(item) } },
            },
        },
    })
}

fn content(schema: Value, media: &str) -> Value {
    json!({ media: { "schema": schema } })
}

fn hal(schema: Value) -> Value {
    content(schema, "application/hal+json")
}

fn problem(desc: &str) -> Value {
    json!({ "description": desc, "content": content(r("Problem"), "application/problem+json") })
}

/// The answers every authorised call may give besides its own.
fn with_errors(mut responses: Map<String, Value>) -> Value {
    responses.insert("400".into(), problem("Bad request or validation errors"));
    responses.insert("401".into(), problem("No valid token"));
    responses.insert("403".into(), problem("The token's user may not do this"));
    responses.insert("404".into(), problem("No such endpoint or record"));
    responses.insert(
        "413".into(),
        problem("The body is larger than the endpoint accepts"),
    );
    responses.insert(
        "429".into(),
        json!({
            "description": "Over the integration's requests per second; see Retry-After",
            "headers": { "Retry-After": { "schema": int() } },
            "content": content(r("Problem"), "application/problem+json"),
        }),
    );
    Value::Object(responses)
}

fn ok(desc: &str, schema: Value) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "200".into(),
        json!({ "description": desc, "content": hal(schema) }),
    );
    m
}

fn ok_or_empty(desc: &str, schema: Value) -> Map<String, Value> {
    let mut m = ok(desc, schema);
    m.insert("204".into(), json!({ "description": "Nothing to return" }));
    m
}

fn empty() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("204".into(), json!({ "description": "Done" }));
    m
}

fn query(name: &str, schema: Value, desc: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "schema": schema, "description": desc })
}

fn path_id(name: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "schema": { "type": "integer", "minimum": 1, "maximum": 9_000_000_000_000_000_000i64 } })
}

fn paging() -> Vec<Value> {
    vec![
        query(
            "page",
            json!({"type": "integer", "minimum": 1, "maximum": 1000000}),
            "Page number, from 1",
        ),
        query(
            "limit",
            json!({"type": "integer", "minimum": 1, "maximum": 250}),
            "Items per page, at most 250",
        ),
    ]
}

fn op(
    summary: &str,
    tag: &str,
    params: Vec<Value>,
    body: Option<Value>,
    responses: Map<String, Value>,
) -> Value {
    let mut o = json!({
        "summary": summary,
        "tags": [tag],
        "parameters": params,
        "responses": with_errors(responses),
    });
    if let Some(b) = body {
        o["requestBody"] = json!({ "required": true, "content": content(b, "application/json") });
    }
    o
}

fn array_of(schema: Value, max: usize) -> Value {
    json!({ "type": "array", "items": schema, "minItems": 1, "maxItems": max })
}

fn schemas() -> Value {
    let cf_values = json!({
        "type": "array", "nullable": true,
        "items": { "type": "object", "properties": {
            "field_id": nullable("integer"), "field_name": string(), "field_code": nullable("string"),
            "field_type": string(), "values": { "type": "array", "items": { "type": "object" } },
        }},
    });
    let tag = json!({ "type": "object", "required": ["id", "name"], "properties": {
        "id": int(), "name": string(), "color": nullable("string") } });
    json!({
        "Links": { "type": "object", "properties": { "self": { "type": "object", "properties": { "href": string() } } } },
        "Problem": { "type": "object", "required": ["title", "type", "status", "detail"], "properties": {
            "title": string(), "type": string(), "status": int(), "detail": string(), "code": string(), "hint": string(),
            "validation-errors": { "type": "array", "items": { "type": "object", "required": ["request_id", "errors"], "properties": {
                "request_id": string(),
                "errors": { "type": "array", "items": { "type": "object", "properties": { "code": string(), "path": string(), "detail": string() } } },
            }}},
        }},
        "Tag": tag,
        "Lead": { "type": "object", "required": ["id", "name", "price", "status_id", "pipeline_id", "created_at", "updated_at"], "properties": {
            "id": int(), "name": string(), "price": int(), "responsible_user_id": int(), "group_id": int(),
            "status_id": int(), "pipeline_id": int(), "loss_reason_id": nullable("integer"), "source_id": nullable("integer"),
            "created_by": int(), "updated_by": int(), "created_at": int(), "updated_at": int(),
            "closed_at": nullable("integer"), "closest_task_at": nullable("integer"), "is_deleted": { "type": "boolean" },
            "custom_fields_values": cf_values, "score": nullable("integer"), "account_id": int(), "labor_cost": nullable("integer"),
            "_links": links(), "_embedded": { "type": "object" },
        }},
        "LeadWrite": { "type": "object", "properties": {
            "id": int(), "name": string(), "price": { "type": "integer", "minimum": 0 }, "status_id": int(), "pipeline_id": int(),
            "responsible_user_id": int(), "loss_reason_id": int(), "request_id": string(),
            "custom_fields_values": { "type": "array", "items": { "type": "object" } },
            "tags_to_add": { "type": "array", "items": { "type": "object" } },
            "tags_to_delete": { "type": "array", "items": { "type": "object" } },
            "_embedded": { "type": "object" },
        }},
        "Ref": { "type": "object", "required": ["id"], "properties": {
            "id": int(), "request_id": string(), "updated_at": int(), "entity_id": int(), "_links": links() } },
        "Complex": { "type": "object", "required": ["id", "contact_id", "company_id", "request_id", "merged"], "properties": {
            "id": int(), "contact_id": nullable("integer"), "company_id": nullable("integer"),
            "request_id": { "type": "array", "items": string() }, "merged": { "type": "boolean" } } },
        "Status": { "type": "object", "required": ["id", "name", "pipeline_id", "type"], "properties": {
            "id": int(), "name": string(), "sort": int(), "is_editable": { "type": "boolean" }, "pipeline_id": int(),
            "color": string(), "type": int(), "account_id": int(), "_links": links(), "request_id": string() } },
        "Pipeline": { "type": "object", "required": ["id", "name", "is_main"], "properties": {
            "id": int(), "name": string(), "sort": int(), "is_main": { "type": "boolean" }, "is_unsorted_on": { "type": "boolean" },
            "is_archive": { "type": "boolean" }, "account_id": int(), "_links": links(), "request_id": string(),
            "_embedded": { "type": "object", "properties": { "statuses": { "type": "array", "items": r("Status") } } } } },
        "Contact": { "type": "object", "required": ["id", "name"], "properties": {
            "id": int(), "name": string(), "first_name": string(), "last_name": string(), "responsible_user_id": int(),
            "created_at": int(), "updated_at": int(), "custom_fields_values": cf_values, "account_id": int(),
            "_links": links(), "_embedded": { "type": "object" } } },
        "Company": { "type": "object", "required": ["id", "name"], "properties": {
            "id": int(), "name": string(), "responsible_user_id": int(), "created_at": int(), "updated_at": int(),
            "custom_fields_values": cf_values, "account_id": int(), "_links": links(), "_embedded": { "type": "object" } } },
        "Task": { "type": "object", "required": ["id", "text", "is_completed", "complete_till"], "properties": {
            "id": int(), "text": string(), "entity_id": nullable("integer"), "entity_type": nullable("string"),
            "task_type_id": int(), "is_completed": { "type": "boolean" }, "complete_till": int(), "responsible_user_id": int(),
            "created_by": int(), "created_at": int(), "updated_at": int(), "duration": int(), "account_id": int(),
            "result": {}, "_links": links() } },
        "Note": { "type": "object", "required": ["id", "entity_id", "note_type"], "properties": {
            "id": int(), "entity_id": int(), "note_type": string(), "params": { "type": "object" }, "created_by": int(),
            "created_at": int(), "updated_at": int(), "is_pinned": { "type": "boolean" }, "account_id": int(), "_links": links() } },
        "Event": { "type": "object", "required": ["id", "type", "created_at"], "properties": {
            "id": string(), "type": string(), "entity_id": nullable("integer"), "entity_type": nullable("string"),
            "created_by": int(), "created_at": int(), "value_after": { "type": "array" }, "value_before": { "type": "array" },
            "account_id": int(), "_links": links() } },
        "Unsorted": { "type": "object", "required": ["uid", "category", "pipeline_id"], "properties": {
            "uid": string(), "source_uid": nullable("string"), "source_name": nullable("string"), "category": string(),
            "pipeline_id": int(), "created_at": int(), "metadata": { "type": "object" }, "account_id": int(),
            "_links": links(), "_embedded": { "type": "object" } } },
        "User": { "type": "object", "required": ["id", "name", "email"], "properties": {
            "id": int(), "name": string(), "email": string(), "lang": string(), "rights": { "type": "object" }, "_links": links() } },
        "Webhook": { "type": "object", "required": ["id", "destination", "settings"], "properties": {
            "id": int(), "destination": string(), "created_at": int(), "updated_at": int(), "account_id": int(),
            "created_by": int(), "sort": int(), "disabled": { "type": "boolean" }, "settings": { "type": "array", "items": string() } } },
        "CustomField": { "type": "object", "required": ["id", "name", "type"], "properties": {
            "id": int(), "name": string(), "type": string(), "entity_type": string(), "sort": int(),
            "enums": { "type": "array", "nullable": true, "items": { "type": "object" } },
            "group_id": nullable("string"), "_links": links() } },
        "FieldGroup": { "type": "object", "required": ["id", "name", "sort", "entity_type"], "properties": {
            "id": string(), "name": string(), "sort": int(), "is_predefined": { "type": "boolean" },
            "type": string(), "entity_type": string(), "fields": { "type": "array", "items": int() },
            "request_id": string(), "_links": links() } },
        "Talk": { "type": "object", "required": ["talk_id", "chat_id", "origin"], "properties": {
            "talk_id": int(), "chat_id": string(), "origin": string(), "contact_id": nullable("integer"),
            "entity_id": nullable("integer"), "entity_type": nullable("string"), "is_read": { "type": "boolean" },
            "is_in_work": { "type": "boolean" }, "created_at": int(), "updated_at": int() } },
        "LossReason": { "type": "object", "required": ["id", "name"], "properties": {
            "id": int(), "name": string(), "sort": int(), "request_id": string(), "_links": links() } },
        "Account": { "type": "object", "required": ["id", "name", "subdomain"], "properties": {
            "id": int(), "name": string(), "subdomain": string(), "current_user_id": int(), "currency": string(),
            "created_at": int(), "_links": links(), "_embedded": { "type": "object" } } },
        "Token": { "type": "object", "required": ["token_type", "expires_in", "access_token", "refresh_token"], "properties": {
            "token_type": string(), "expires_in": int(), "access_token": string(), "refresh_token": string(), "server_time": int() } },
    })
}

fn build() -> Value {
    let entity = json!({ "name": "entity", "in": "path", "required": true,
        "schema": { "type": "string", "enum": ["leads", "contacts", "companies"] } });
    let with = query(
        "with",
        string(),
        "Comma-separated extras, e.g. contacts,loss_reason",
    );
    let mut lead_list = paging();
    lead_list.extend([
        with.clone(),
        query("query", string(), "Search by name, or a lead id"),
        query(
            "filter[id][]",
            json!({"type": "array", "items": int()}),
            "Lead ids",
        ),
        query("filter[price][from]", int(), "Budget from"),
        query("filter[price][to]", int(), "Budget to"),
        query("filter[pipeline_id]", int(), "Pipeline"),
        query("filter[responsible_user_id]", int(), "Responsible user"),
        query(
            "filter[created_at][from]",
            int(),
            "Created from (unix seconds)",
        ),
        query("filter[created_at][to]", int(), "Created to (unix seconds)"),
        query(
            "filter[statuses][0][pipeline_id]",
            int(),
            "A status's pipeline",
        ),
        query("filter[statuses][0][status_id]", int(), "A status"),
        query(
            "order[id]",
            json!({"type": "string", "enum": ["asc", "desc"]}),
            "Order",
        ),
    ]);
    let batch = |item: &str, max: usize| array_of(r(item), max);
    let refs = |key: &str| list_of(key, "Ref");
    let mut paths = Map::new();
    let mut add = |path: &str, method: &str, o: Value| {
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[method] = o;
    };
    add(
        "/api/v4/account",
        "get",
        op(
            "The account",
            "account",
            vec![with.clone()],
            None,
            ok("The account", r("Account")),
        ),
    );
    add(
        "/api/v4/leads",
        "get",
        op(
            "List leads",
            "leads",
            lead_list,
            None,
            ok_or_empty("A page of leads", list_of("leads", "Lead")),
        ),
    );
    add(
        "/api/v4/leads",
        "post",
        op(
            "Create leads",
            "leads",
            vec![],
            Some(batch("LeadWrite", 250)),
            ok("Created", refs("leads")),
        ),
    );
    add(
        "/api/v4/leads",
        "patch",
        op(
            "Update leads",
            "leads",
            vec![],
            Some(batch("LeadWrite", 250)),
            ok("Updated", refs("leads")),
        ),
    );
    add(
        "/api/v4/leads/{id}",
        "get",
        op(
            "One lead",
            "leads",
            vec![path_id("id"), with.clone()],
            None,
            ok_or_empty("The lead", r("Lead")),
        ),
    );
    add(
        "/api/v4/leads/{id}",
        "patch",
        op(
            "Update a lead",
            "leads",
            vec![path_id("id")],
            Some(r("LeadWrite")),
            ok("Updated", r("Ref")),
        ),
    );
    add(
        "/api/v4/leads/complex",
        "post",
        op(
            "Create leads with a contact and a company",
            "leads",
            vec![],
            Some(batch("LeadWrite", 50)),
            ok("Created", json!({"type": "array", "items": r("Complex")})),
        ),
    );
    add(
        "/api/v4/leads/pipelines",
        "get",
        op(
            "List pipelines",
            "pipelines",
            vec![],
            None,
            ok("Pipelines", list_of("pipelines", "Pipeline")),
        ),
    );
    add(
        "/api/v4/leads/pipelines",
        "post",
        op(
            "Create pipelines",
            "pipelines",
            vec![],
            Some(array_of(json!({"type": "object"}), 250)),
            ok("Created", list_of("pipelines", "Pipeline")),
        ),
    );
    add(
        "/api/v4/leads/pipelines/{id}",
        "get",
        op(
            "One pipeline",
            "pipelines",
            vec![path_id("id")],
            None,
            ok_or_empty("The pipeline", r("Pipeline")),
        ),
    );
    add(
        "/api/v4/leads/pipelines/{id}/statuses",
        "get",
        op(
            "A pipeline's statuses",
            "pipelines",
            vec![path_id("id")],
            None,
            ok("Statuses", list_of("statuses", "Status")),
        ),
    );
    add(
        "/api/v4/leads/loss_reasons",
        "get",
        op(
            "Loss reasons",
            "leads",
            paging(),
            None,
            ok_or_empty("Loss reasons", list_of("loss_reasons", "LossReason")),
        ),
    );
    add(
        "/api/v4/contacts",
        "get",
        op(
            "List contacts",
            "contacts",
            {
                let mut p = paging();
                p.push(query("query", string(), "Search"));
                p
            },
            None,
            ok_or_empty("Contacts", list_of("contacts", "Contact")),
        ),
    );
    add(
        "/api/v4/contacts/{id}",
        "get",
        op(
            "One contact",
            "contacts",
            vec![path_id("id")],
            None,
            ok_or_empty("The contact", r("Contact")),
        ),
    );
    add(
        "/api/v4/companies",
        "get",
        op(
            "List companies",
            "companies",
            paging(),
            None,
            ok_or_empty("Companies", list_of("companies", "Company")),
        ),
    );
    add(
        "/api/v4/companies/{id}",
        "get",
        op(
            "One company",
            "companies",
            vec![path_id("id")],
            None,
            ok_or_empty("The company", r("Company")),
        ),
    );
    add(
        "/api/v4/{entity}/{id}/links",
        "get",
        op(
            "A record's links",
            "links",
            vec![entity.clone(), path_id("id")],
            None,
            ok_or_empty("Links", json!({"type": "object"})),
        ),
    );
    add(
        "/api/v4/{entity}/notes",
        "get",
        op(
            "Notes of a kind of record",
            "notes",
            {
                let mut p = vec![entity.clone()];
                p.extend(paging());
                p
            },
            None,
            ok_or_empty("Notes", list_of("notes", "Note")),
        ),
    );
    add(
        "/api/v4/{entity}/{id}/notes",
        "get",
        op(
            "A record's notes",
            "notes",
            {
                let mut p = vec![entity.clone(), path_id("id")];
                p.extend(paging());
                p
            },
            None,
            ok_or_empty("Notes", list_of("notes", "Note")),
        ),
    );
    add(
        "/api/v4/{entity}/tags",
        "get",
        op(
            "Tags",
            "tags",
            {
                let mut p = vec![entity.clone()];
                p.extend(paging());
                p
            },
            None,
            ok_or_empty("Tags", list_of("tags", "Tag")),
        ),
    );
    add(
        "/api/v4/{entity}/custom_fields",
        "get",
        op(
            "Custom fields",
            "custom_fields",
            {
                let mut p = vec![entity.clone()];
                p.extend(paging());
                p
            },
            None,
            ok_or_empty("Fields", list_of("custom_fields", "CustomField")),
        ),
    );
    add(
        "/api/v4/tasks",
        "get",
        op(
            "List tasks",
            "tasks",
            {
                let mut p = paging();
                p.push(query(
                    "filter[is_completed]",
                    json!({"type": "integer", "enum": [0, 1]}),
                    "Completed",
                ));
                p
            },
            None,
            ok_or_empty("Tasks", list_of("tasks", "Task")),
        ),
    );
    add(
        "/api/v4/tasks/{id}",
        "get",
        op(
            "One task",
            "tasks",
            vec![path_id("id")],
            None,
            ok_or_empty("The task", r("Task")),
        ),
    );
    add(
        "/api/v4/events",
        "get",
        op(
            "Events",
            "events",
            {
                let mut p = paging();
                p.push(query(
                    "filter[entity]",
                    string(),
                    "lead, contact, company (comma list)",
                ));
                p.push(query("filter[type]", string(), "Event types (comma list)"));
                p
            },
            None,
            ok_or_empty("Events", list_of("events", "Event")),
        ),
    );
    add(
        "/api/v4/events/types",
        "get",
        op(
            "Event types",
            "events",
            vec![],
            None,
            ok("Types", json!({"type": "object"})),
        ),
    );
    add(
        "/api/v4/users",
        "get",
        op(
            "Users",
            "users",
            paging(),
            None,
            ok_or_empty("Users", list_of("users", "User")),
        ),
    );
    add(
        "/api/v4/users/{id}",
        "get",
        op(
            "One user",
            "users",
            vec![path_id("id")],
            None,
            ok_or_empty("The user", r("User")),
        ),
    );
    add(
        "/api/v4/leads/unsorted",
        "get",
        op(
            "Incoming leads",
            "unsorted",
            {
                let mut p = paging();
                p.push(query(
                    "filter[category]",
                    string(),
                    "sip, mail, forms, chats",
                ));
                p
            },
            None,
            ok_or_empty("Incoming leads", list_of("unsorted", "Unsorted")),
        ),
    );
    add(
        "/api/v4/leads/unsorted/summary",
        "get",
        op(
            "Incoming leads summary",
            "unsorted",
            vec![],
            None,
            ok(
                "Summary",
                json!({"type": "object", "required": ["total"], "properties": {"total": int()}}),
            ),
        ),
    );
    add(
        "/api/v4/contacts",
        "patch",
        op(
            "Update contacts",
            "contacts",
            vec![],
            Some(array_of(json!({"type": "object"}), 250)),
            ok("Updated", refs("contacts")),
        ),
    );
    add(
        "/api/v4/companies",
        "patch",
        op(
            "Update companies",
            "companies",
            vec![],
            Some(array_of(json!({"type": "object"}), 250)),
            ok("Updated", refs("companies")),
        ),
    );
    let obj = || json!({"type": "object"});
    let batch = || Some(array_of(json!({"type": "object"}), 250));
    add(
        "/api/v4/leads/pipelines/{id}",
        "patch",
        op(
            "Rename a pipeline, move it, or make it the main one",
            "pipelines",
            vec![path_id("id")],
            Some(obj()),
            ok("The pipeline", r("Pipeline")),
        ),
    );
    add(
        "/api/v4/leads/pipelines/{id}",
        "delete",
        op(
            "Delete a pipeline (not the main one, nor one holding leads)",
            "pipelines",
            vec![path_id("id")],
            None,
            empty(),
        ),
    );
    add(
        "/api/v4/leads/loss_reasons",
        "patch",
        op(
            "Rename loss reasons",
            "leads",
            vec![],
            batch(),
            ok("Renamed", list_of("loss_reasons", "LossReason")),
        ),
    );
    add(
        "/api/v4/leads/loss_reasons/{id}",
        "get",
        op(
            "One loss reason",
            "leads",
            vec![path_id("id")],
            None,
            ok_or_empty("The reason", r("LossReason")),
        ),
    );
    add(
        "/api/v4/leads/loss_reasons/{id}",
        "delete",
        op(
            "Delete a loss reason no lead gives",
            "leads",
            vec![path_id("id")],
            None,
            empty(),
        ),
    );
    add(
        "/api/v4/{entity}/tags",
        "post",
        op(
            "Create tags (a name in use gives that tag)",
            "tags",
            vec![entity.clone()],
            batch(),
            ok("Tags", list_of("tags", "Tag")),
        ),
    );
    add(
        "/api/v4/{entity}/custom_fields/{id}",
        "get",
        op(
            "One custom field",
            "custom_fields",
            vec![entity.clone(), path_id("id")],
            None,
            ok_or_empty("The field", obj()),
        ),
    );
    add(
        "/api/v4/{entity}/custom_fields/{id}",
        "patch",
        op(
            "Change a field's name, choices, group or (leads) required statuses",
            "custom_fields",
            vec![entity.clone(), path_id("id")],
            Some(obj()),
            ok("The field", obj()),
        ),
    );
    add(
        "/api/v4/{entity}/custom_fields/{id}",
        "delete",
        op(
            "Delete a field with its values",
            "custom_fields",
            vec![entity.clone(), path_id("id")],
            None,
            empty(),
        ),
    );
    add(
        "/api/v4/tasks",
        "patch",
        op(
            "Change tasks: text, type, due time, responsible, completion",
            "tasks",
            vec![],
            batch(),
            ok("Updated", refs("tasks")),
        ),
    );
    add(
        "/api/v4/users",
        "post",
        op(
            "Add users",
            "users",
            vec![],
            batch(),
            ok("Added", list_of("users", "User")),
        ),
    );
    add(
        "/api/v4/roles",
        "post",
        op("Add roles", "users", vec![], batch(), ok("Added", obj())),
    );
    add(
        "/api/v4/roles/{id}",
        "get",
        op(
            "One role",
            "users",
            vec![path_id("id")],
            None,
            ok_or_empty("The role", obj()),
        ),
    );
    add(
        "/api/v4/roles/{id}",
        "patch",
        op(
            "Rename a role or change its rights",
            "users",
            vec![path_id("id")],
            Some(obj()),
            ok("The role", obj()),
        ),
    );
    add(
        "/api/v4/roles/{id}",
        "delete",
        op(
            "Delete a role (its users keep its rights)",
            "users",
            vec![path_id("id")],
            None,
            empty(),
        ),
    );
    let group_path = json!({ "name": "group", "in": "path", "required": true,
        "schema": { "type": "string", "pattern": "^((leads|contacts|companies)_)?[0-9]{1,18}$" },
        "description": "A group's id as listed, e.g. leads_12" });
    add(
        "/api/v4/{entity}/custom_fields/groups",
        "get",
        op(
            "Custom field groups, in order, each with its fields' ids",
            "custom_fields",
            {
                let mut p = paging();
                p.insert(0, entity.clone());
                p
            },
            None,
            ok_or_empty("Groups", list_of("custom_field_groups", "FieldGroup")),
        ),
    );
    add(
        "/api/v4/{entity}/custom_fields/groups",
        "post",
        op(
            "Add field groups: name, sort, fields (ids to show under it)",
            "custom_fields",
            vec![entity.clone()],
            batch(),
            ok("Added", list_of("custom_field_groups", "FieldGroup")),
        ),
    );
    add(
        "/api/v4/{entity}/custom_fields/groups/{group}",
        "get",
        op(
            "One field group",
            "custom_fields",
            vec![entity.clone(), group_path.clone()],
            None,
            ok_or_empty("The group", r("FieldGroup")),
        ),
    );
    add(
        "/api/v4/{entity}/custom_fields/groups/{group}",
        "patch",
        op(
            "Rename a field group, move it, or set its fields",
            "custom_fields",
            vec![entity.clone(), group_path.clone()],
            Some(obj()),
            ok("The group", r("FieldGroup")),
        ),
    );
    add(
        "/api/v4/{entity}/custom_fields/groups/{group}",
        "delete",
        op(
            "Delete a field group (its fields stay, in the main list)",
            "custom_fields",
            vec![entity.clone(), group_path],
            None,
            empty(),
        ),
    );
    add(
        "/api/v4/talks",
        "get",
        op(
            "Chats with clients (talks), newest first",
            "talks",
            {
                let mut p = paging();
                p.push(query(
                    "filter[is_read]",
                    json!({"type": "integer", "enum": [0, 1]}),
                    "0: unread only",
                ));
                p.push(query(
                    "filter[mine]",
                    json!({"type": "integer", "enum": [0, 1]}),
                    "1: assigned to the token's user",
                ));
                p.push(query(
                    "filter[origin]",
                    json!({"type": "string", "enum": ["telegram", "whatsapp", "instagram"]}),
                    "Messenger",
                ));
                p
            },
            None,
            ok_or_empty("Talks", list_of("talks", "Talk")),
        ),
    );
    add(
        "/api/v4/talks/{id}",
        "get",
        op(
            "One talk",
            "talks",
            vec![path_id("id")],
            None,
            ok_or_empty("The talk", r("Talk")),
        ),
    );
    add(
        "/api/v4/talks/{id}/messages",
        "get",
        op(
            "A talk's messages (Voronka extension)",
            "talks",
            {
                let mut p = vec![path_id("id")];
                p.push(query(
                    "limit",
                    json!({"type": "integer", "minimum": 1, "maximum": 250}),
                    "The last N messages",
                ));
                p.push(query("filter[after_id]", int(), "Messages after this one"));
                p
            },
            None,
            ok_or_empty("Messages", obj()),
        ),
    );
    add(
        "/api/v4/talks/{id}/messages",
        "post",
        op(
            "Send a message to the client (Voronka extension; `uid` makes it idempotent)",
            "talks",
            vec![path_id("id")],
            Some(
                json!({"type": "object", "required": ["text"], "properties": {"text": string(), "uid": {"type": "string", "format": "uuid"}}}),
            ),
            ok("Queued", obj()),
        ),
    );
    add(
        "/api/v4/webhooks",
        "delete",
        op(
            "Unsubscribe a destination",
            "webhooks",
            vec![],
            Some(
                json!({"type": "object", "required": ["destination"], "properties": {"destination": string()}}),
            ),
            empty(),
        ),
    );
    add(
        "/api/v4/webhooks",
        "get",
        op(
            "Webhook subscriptions",
            "webhooks",
            vec![],
            None,
            ok_or_empty("Subscriptions", list_of("webhooks", "Webhook")),
        ),
    );
    let mut docs = Map::new();
    docs.insert("openapi".into(), json!("3.0.3"));
    docs.insert(
        "info".into(),
        json!({
            "title": "Voronka API (amoCRM API v4 compatible)",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Authorise with `Authorization: Bearer <token>`: a long-lived token (Settings → API tokens) or an OAuth 2.0 access token from POST /oauth2/access_token. Lists page with page/limit (at most 250) and answer 204 when empty; errors are application/problem+json.",
        }),
    );
    docs.insert("paths".into(), Value::Object(paths));
    docs.insert(
        "components".into(),
        json!({
            "schemas": schemas(),
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } },
        }),
    );
    docs.insert("security".into(), json!([{ "bearer": [] }]));
    Value::Object(docs)
}

pub fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(build)
}

pub async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "application/json"))
        .body(spec().to_string())
}

pub struct OperationView {
    pub method: String,
    pub path: String,
    pub summary: String,
    pub params: String,
}

#[derive(Template)]
#[template(path = "settings/api_docs.html")]
struct DocsTpl<'a> {
    ctx: &'a Ctx,
    operations: Vec<OperationView>,
}

/// The document as a page: every operation with its parameters.
pub async fn page(ctx: Ctx) -> PageResult {
    let mut operations = Vec::new();
    if let Some(paths) = spec()["paths"].as_object() {
        for (path, methods) in paths {
            for (method, o) in methods.as_object().into_iter().flatten() {
                let params = o["parameters"]
                    .as_array()
                    .map(|ps| {
                        ps.iter()
                            .filter_map(|p| p["name"].as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                operations.push(OperationView {
                    method: method.to_uppercase(),
                    path: path.clone(),
                    summary: o["summary"].as_str().unwrap_or_default().to_string(),
                    params,
                });
            }
        }
    }
    html(
        StatusCode::OK,
        &DocsTpl {
            ctx: &ctx,
            operations,
        },
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_operation_names_its_answers() {
        let spec = super::spec();
        for (path, methods) in spec["paths"].as_object().unwrap() {
            for (method, o) in methods.as_object().unwrap() {
                assert!(o["responses"]["401"].is_object(), "{method} {path}");
                assert!(o["summary"].is_string(), "{method} {path}");
            }
        }
    }
}

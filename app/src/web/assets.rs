//! Static assets compiled into the binary: nothing to deploy next to it.

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use actix_web::{HttpRequest, HttpResponse, web};

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../../static/app.css"),
    },
    Asset {
        name: "htmx.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../../static/htmx.min.js"),
    },
    Asset {
        name: "sortable.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../../static/sortable.min.js"),
    },
    Asset {
        name: "board.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../../static/board.js"),
    },
];

/// A cheap content hash for the ETag (FNV-1a), computed per request on a few KB.
fn etag(body: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in body {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("\"{h:016x}\"")
}

pub async fn serve(req: HttpRequest, file: web::Path<String>) -> HttpResponse {
    let Some(asset) = ASSETS.iter().find(|a| a.name == file.as_str()) else {
        return HttpResponse::NotFound().body("no such asset");
    };
    let tag = etag(asset.body);
    if req
        .headers()
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(tag.as_str())
    {
        return HttpResponse::NotModified().finish();
    }
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, asset.content_type))
        .insert_header((CACHE_CONTROL, "public, max-age=3600"))
        .insert_header((ETAG, tag))
        .body(asset.body)
}

pub async fn favicon() -> HttpResponse {
    HttpResponse::NoContent().finish()
}

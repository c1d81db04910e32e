//! Two tenants mounted by path under one shared domain, through the real edge (TLS, HTTP/1.1):
//! one's session cookie is scoped to its prefix and never reaches the other.

use super::*;

async fn send(
    c: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    path: &str,
    extra: &[(&str, &str)],
) -> (u16, Vec<String>, String) {
    let mut b = Request::get(path).header("host", "shared.test");
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    let r = c
        .send_request(b.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let cookies = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let status = r.status().as_u16();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    (status, cookies, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn path_mounted_tenants_cookies_stay_under_their_own_prefix() {
    let (a, b) = (backend("acme").await, backend("globex").await);
    let mut acme = tenant("acme", a.addr, &[]);
    acme.mounts = vec![("shared.test".into(), "acme".into(), true)];
    let mut globex = tenant("globex", b.addr, &[]);
    globex.mounts = vec![("shared.test".into(), "globex".into(), true)];
    let e = edge(vec![acme, globex]).await;
    let mut c = client(&e, "shared.test").await;

    // acme's login sets Path=/ and the shared domain: the browser is told /acme, host-only.
    let (s, set, _) = send(&mut c, "/acme/login", &[]).await;
    assert_eq!(s, 200);
    assert_eq!(set, ["acme_sid=s3cret; Path=/acme; HttpOnly"]);

    // A browser that still sent it to globex (a cookie set before, or by script at "/"):
    // globex never sees it; acme does.
    let jar = [("cookie", "acme_sid=s3cret; theme=dark")];
    let (_, _, body) = send(&mut c, "/globex/page", &jar).await;
    assert!(
        body.contains("cookie=theme=dark") && !body.contains("acme_sid"),
        "{body}"
    );
    let (_, _, body) = send(&mut c, "/acme/page", &jar).await;
    assert!(body.contains("acme_sid=s3cret"), "{body}");

    // Script on acme's page fetching globex's pages with globex's cookies: sent without any.
    let (_, set, _) = send(&mut c, "/globex/login", &[]).await;
    assert_eq!(set, ["globex_sid=s3cret; Path=/globex; HttpOnly"]);
    let fetch = [
        ("cookie", "globex_sid=s3cret"),
        ("sec-fetch-mode", "cors"),
        ("referer", "https://shared.test/acme/evil.html"),
    ];
    let (_, _, body) = send(&mut c, "/globex/wp-admin/", &fetch).await;
    assert!(body.contains("cookie=-"), "{body}");
    // globex's own page doing the same: its cookie goes with it.
    let own = [
        ("cookie", "globex_sid=s3cret"),
        ("sec-fetch-mode", "cors"),
        ("referer", "https://shared.test/globex/app"),
    ];
    let (_, _, body) = send(&mut c, "/globex/wp-admin/", &own).await;
    assert!(body.contains("cookie=globex_sid=s3cret"), "{body}");
}

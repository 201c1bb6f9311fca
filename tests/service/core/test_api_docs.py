"""The API reference works on a box with no internet: /docs and /redoc render in a real
headless browser that may reach nothing but the service."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.browser import OfflinePage


def test_docs_render_every_operation_with_no_network(
    live_server: str, offline_page: OfflinePage, client: TestClient
) -> None:
    operations = {
        (method.upper(), path)
        for path, item in client.get("/openapi.json").json()["paths"].items()
        for method in item
    }
    page = offline_page.page
    page.goto(f"{live_server}/docs", wait_until="networkidle")
    page.wait_for_selector(".opblock", timeout=30_000)
    shown = {
        (
            block.query_selector(".opblock-summary-method").inner_text().strip(),
            block.query_selector(".opblock-summary-path").get_attribute("data-path"),
        )
        for block in page.query_selector_all(".opblock")
    }
    assert shown == operations
    assert ("POST", "/v1/choose") in shown
    assert offline_page.blocked == []  # nothing asked for a CDN (or anything else)


def test_redoc_renders_with_no_network(live_server: str, offline_page: OfflinePage) -> None:
    page = offline_page.page
    page.goto(f"{live_server}/redoc", wait_until="networkidle")
    page.wait_for_selector("text=Decide one unit", timeout=30_000)
    text = page.inner_text("body")
    assert "/v1/choose/batch" in text
    assert "_parse" not in text  # no internal function names in descriptions
    assert offline_page.blocked == []


def test_no_description_names_an_internal_function(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            text = f"{operation.get('summary', '')} {operation.get('description', '')}"
            assert "``" not in text, (method, path, text)
            assert " _" not in text, (method, path, text)


def test_assets_are_served_by_the_service(client: TestClient) -> None:
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
        response = client.get(f"/docs/assets/{name}")
        assert response.status_code == 200, name
        assert len(response.content) > 100_000, name
    html = client.get("/docs").text + client.get("/redoc").text
    assert "cdn" not in html.lower()
    assert "fonts.googleapis" not in html

"""The API documents itself, and the docs page works on a network with no CDN."""

from __future__ import annotations

import json
import re

from tests.e2e.processes import Deployment, api


def test_swagger_ui_is_served_from_the_installed_bundle(deployment: Deployment) -> None:
    _, base_url = deployment.start_api()
    with api(base_url, timeout=10) as http:
        page = http.get("/docs")
        assert page.status_code == 200
        assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
        assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
        for asset in assets:
            assert asset.startswith("/"), f"{asset} would need the internet"
            assert http.get(asset).status_code == 200, asset

        spec = http.get("/openapi.json").json()
    post = spec["paths"]["/api/activities"]["post"]
    assert {"202", "400", "413", "415", "503"} <= set(post["responses"])
    assert set(spec["paths"]) >= {
        "/api/activities",
        "/api/activities/{activity_id}",
        "/health",
        "/health/ready",
    }
    schemas = spec["components"]["schemas"]
    assert schemas["ActivityIn"]["examples"]
    assert schemas["ActivityIn"]["additionalProperties"] is False
    listing = spec["paths"]["/api/activities"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {
        "userId",
        "action",
        "startDate",
        "endDate",
        "page",
        "limit",
        "cursor",
        "includeTotal",
    }
    assert '"422"' not in json.dumps(spec["paths"]), "the service answers 400 for invalid input, not 422"
    assert "HTTPValidationError" not in spec["components"]["schemas"]

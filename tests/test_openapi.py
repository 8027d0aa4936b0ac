"""A schemathesis run of the admin API's OpenAPI description: no server errors, answers that
match what the description says."""

import json

import schemathesis
from hypothesis import HealthCheck, given, seed, settings

from tests.conftest import ADMIN


def test_admin_api_matches_its_description(app):
    app.config["ADMIN_RATE_LIMIT"] = 10**9
    schema = schemathesis.openapi.from_wsgi("/admin/api/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:
        # Seeded and derandomized: the same cases every run, so a failure here is about the
        # change under test, and can be reproduced.
        @seed(20261126)
        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            derandomize=True,
        )
        def check(case):
            case.call_and_validate(headers=ADMIN)

        check()


def test_a_campaign_description_offers_no_null_survey_or_audience(app):
    """Schemathesis found `{"audience": null}` described as valid and refused: staff tools
    generated from the description would send what the service refuses."""
    spec = app.test_client().get("/admin/api/openapi.json").get_json()
    schemas = spec["components"]["schemas"]
    (campaign,) = [s for name, s in schemas.items() if name.startswith("CampaignRequest")]
    assert {"survey", "audience"} <= set(campaign["required"])
    for field in ("survey", "audience"):
        described = json.dumps(campaign["properties"][field])
        assert '"null"' not in described, (field, described)

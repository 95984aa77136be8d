"""report.json against its schema: a real run's file validates (checked by the jsonschema
package, an implementation independent of this one), reads back into the typed report and
is written again unchanged; malformed files are refused with the place named."""

import copy
import json
import math

import pytest

from auto_circuit_dcd import RunReport
from auto_circuit_dcd.schema import SchemaError


@pytest.fixture(scope="module")
def toy_report(tmp_path_factory):
    """``(report.json parsed, the RunReport run returned)`` of a small toy job."""
    from auto_circuit_dcd.job.pipeline import RunConfig, run

    out = tmp_path_factory.mktemp("toy")
    typed = run(RunConfig(out=str(out), edge_fractions=[0.05, 0.2, 1.0], threads=1,
                          stability_resamples=2), progress=False)
    return json.loads((out / "report.json").read_text()), typed, out


def test_a_real_report_validates_against_the_json_schema(toy_report):
    import jsonschema

    data, _, _ = toy_report
    schema = RunReport.json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(data, schema, cls=jsonschema.Draft202012Validator)
    assert data["schema_version"] == 1 and schema["$ref"] == "#/$defs/RunReport"


def test_the_file_reads_back_and_is_written_again_unchanged(toy_report):
    data, typed, out = toy_report
    loaded = RunReport.load(out)
    assert loaded.to_dict() == data
    assert json.loads(typed.to_json()) == data  # what run returned is what it wrote
    assert loaded.dcd.clusters[0].label == data["dcd"]["clusters"][0]["label"]
    assert loaded.cross_faithfulness.matrix == data["cross_faithfulness"]["matrix"]


def test_nan_is_null_in_the_file_and_nan_in_python(toy_report):
    """The one NaN rule: a value that does not exist is written null and read as NaN."""
    data, _, _ = toy_report
    planted = copy.deepcopy(data)
    planted["dcd"]["clusters"][0]["faithfulness_own"][0] = None
    planted["single"]["cpr"] = None
    report = RunReport.from_dict(planted)
    assert math.isnan(report.dcd.clusters[0].faithfulness_own[0])
    assert math.isnan(report.single.cpr)
    text = report.to_json()
    assert "NaN" not in text
    again = json.loads(text)
    assert again["single"]["cpr"] is None
    assert again["dcd"]["clusters"][0]["faithfulness_own"][0] is None
    report.single.cmd = float("inf")  # infinities follow the same rule
    assert json.loads(report.to_json())["single"]["cmd"] is None


@pytest.mark.parametrize("where, change, message", [
    ("missing", lambda d: d.pop("n_clusters"), "report: missing key 'n_clusters'"),
    ("unknown", lambda d: d["routing"].update(typo=1), "report.routing: unknown keys ['typo']"),
    ("type", lambda d: d["dcd"]["clusters"][1].update(size="12"),
     "report.dcd.clusters[1].size: expected int"),
    ("bool", lambda d: d.update(n_test=True), "report.n_test: expected int"),
    ("list", lambda d: d.update(labels={"0": 1}), "report.labels: expected a list"),
])
def test_a_malformed_report_is_refused_where_it_is_wrong(toy_report, where, change, message):
    """Each fault is refused by the typed reader, naming the place, and by the JSON Schema."""
    import jsonschema

    data, _, _ = toy_report
    bad = copy.deepcopy(data)
    change(bad)
    with pytest.raises(SchemaError, match="^" + __import__("re").escape(message)):
        RunReport.from_dict(bad)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, RunReport.json_schema(), cls=jsonschema.Draft202012Validator)


def test_the_readme_key_list_is_the_schema(toy_report):
    """docs/report.md's list of report.json keys names exactly the schema's top-level fields,
    and every sub-key it lists is a field of the record it sits in."""
    from test_cli import readme_report_keys

    schema = RunReport.json_schema()
    defs = schema["$defs"]
    listed = readme_report_keys()
    assert set(listed) == set(defs["RunReport"]["properties"])

    def record_of(prop):
        ref = prop.get("$ref") or next((p.get("$ref") for p in prop.get("anyOf", [])
                                        if p.get("$ref")), None)
        if ref is None and prop.get("type") == "array":
            return record_of(prop["items"])
        return defs[ref.rsplit("/", 1)[1]] if ref else None

    def check(record, keys, where):
        for key, sub in keys.items():
            assert key in record["properties"], f"{where}.{key}"
            if sub:
                inner = record_of(record["properties"][key])
                assert inner is not None, f"{where}.{key} is not a record"
                check(inner, sub, f"{where}.{key}")

    check(defs["RunReport"], listed, "report")


def test_the_schema_file_in_docs_is_the_schema():
    """docs/report.schema.json (for readers outside Python) is what RunReport gives; after
    a change to the records, rewrite it with
    ``python -c "import auto_circuit_dcd as d, json; print(json.dumps(d.RunReport.json_schema(), indent=1))" > docs/report.schema.json``."""
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[1] / "docs" / "report.schema.json"
    assert json.loads(shipped.read_text()) == RunReport.json_schema()


def test_the_records_computations_return_go_through_json_and_back():
    """The report holds what cluster_quality and cluster_stability return; their JSON form
    by hand: labels and keys as text, arrays as lists, NaN as null, computed fields checked
    and computed again."""
    import numpy as np

    from auto_circuit_dcd.cluster.stability import ClusterStability
    from auto_circuit_dcd.metrics.quality import ClusterQuality, cluster_quality

    q = cluster_quality(["a", "a", "b", "b", "b"], [0, 0, 0, 1, 1])
    d = q.to_dict()
    assert d["contingency"] == [[2, 1], [0, 2]] and d["clusters"] == ["0", "1"]
    assert d["per_cluster"] == {"0": pytest.approx(2 / 3), "1": 1.0}
    assert d["majority_label"] == {"0": "a", "1": "b"} and d["purity"] == pytest.approx(0.8)
    assert (d["n_labelled"], d["n_unlabelled"]) == (5, 0)
    back = ClusterQuality.from_dict(json.loads(json.dumps(d)))
    assert back.to_dict() == d and back.contingency.dtype.kind == "i"

    st = ClusterStability(method="subsample", fraction=0.8, ari=np.array([1.0, 0.5]),
                          n_clusters=np.array([2, 3]), co_assignment={0: 1.0, 1: math.nan},
                          jaccard={0: 0.5, 1: 1.0})
    assert (st.n_resamples, st.ari_mean, st.ari_std) == (2, 0.75, 0.25)
    d = st.to_dict()
    assert list(d) == ["method", "fraction", "n_resamples", "ari_mean", "ari_std", "ari",
                       "n_clusters", "co_assignment", "jaccard", "clusterer"]
    assert d["co_assignment"] == {"0": 1.0, "1": None} and d["n_clusters"] == [2, 3]
    back = ClusterStability.from_dict(json.loads(json.dumps(d)))
    assert set(back.co_assignment) == {0, 1} and math.isnan(back.co_assignment[1])
    assert back.ari.tolist() == [1.0, 0.5] and back.to_dict() == d
    with pytest.raises(SchemaError, match="ClusterStability.n_resamples: expected int"):
        ClusterStability.from_dict({**d, "n_resamples": "2"})
    with pytest.raises(SchemaError, match=r"co_assignment: key 'x' is not a whole number"):
        ClusterStability.from_dict({**d, "co_assignment": {"x": 1.0}})

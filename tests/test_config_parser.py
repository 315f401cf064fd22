"""nango.yaml parsing: every corpus file loads, every rule has an exact, located message."""

import pickle
import textwrap
from pathlib import Path

import pytest

from orchestrator.config.nango_yaml import (
    ConfigError,
    ConfigIssue,
    EndpointSpec,
    NangoConfig,
    load_config,
    parse_config,
    parse_type,
    script_module_path,
)
from orchestrator.errors import OrchestratorError

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "nango-yaml"
CORPUS_FILES = sorted(CORPUS.glob("*.yaml")) if CORPUS.is_dir() else []

SPINE = """\
integrations:
    github:
        syncs:
            issues:
                runs: every 30min
                description: |
                    All issues of the connected repositories.
                version: 1.0.0
                sync_type: incremental
                track_deletes: true
                auto_start: false
                endpoint: GET /issues
                input: RepoFilter
                output: Issue
                scopes: repo, read:user
                webhook-subscriptions: issues
        actions:
            create-issue:
                description: Open an issue
                endpoint: POST /issues
                input: CreateIssue
                output: Issue
                scopes:
                    - repo
            get-issue:
                endpoint: /issue
                output: Issue | null
        on-events:
            post-connection-creation: setup-webhooks
            pre-connection-deletion:
                - remove-webhooks
models:
    Timestamps:
        created_at: date
        updated_at?: date
    Issue:
        __extends: Timestamps
        id: string
        title: string
        state: open | closed
        labels: string[]
        author: User | null
    User:
        login: string
    CreateIssue:
        title: string
        body?: string
    RepoFilter:
        repos: string[]
"""


def parse(text: str) -> NangoConfig:
    return parse_config(textwrap.dedent(text))


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text))
    return [str(issue) for issue in info.value.issues]


def with_models(integration: str, models: str) -> str:
    body = textwrap.indent(integration, "    ")
    return f"integrations:\n  github:\n{body}models:\n{textwrap.indent(models, '  ')}"


ISSUE_MODEL = "Issue:\n  id: string\n"


# ------------------------------------------------------------------------------------------ corpus


@pytest.mark.skipif(not CORPUS_FILES, reason="shared corpus not present")
@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.name)
def test_corpus_file_parses(path: Path) -> None:
    config = load_config(path)
    assert config.integrations
    for integration in config.integrations.values():
        for sync in integration.syncs.values():
            assert sync.interval_seconds >= 30
            for model in sync.output:
                assert any(f.name == "id" for f in config.model_fields_of(model))


@pytest.mark.skipif(not CORPUS_FILES, reason="shared corpus not present")
def test_corpus_has_all_51_files() -> None:
    assert len(CORPUS_FILES) == 51


@pytest.mark.skipif(not CORPUS_FILES, reason="shared corpus not present")
def test_corpus_quirks() -> None:
    # google-docs has a tab inside a plain scalar (js-yaml accepts it, PyYAML does not).
    docs = load_config(CORPUS / "google-docs.yaml")
    mode = next(f for f in docs.models["Document"].fields if f.name == "suggestionsViewMode")
    assert [a.value for a in parse_type(mode.type, docs.models)][-1] == "PREVIEW_WITHOUT_SUGGESTIONS"
    # intercom: one sync with two outputs and two endpoints
    intercom = load_config(CORPUS / "intercom.yaml")
    sync = intercom.integrations["intercom"].syncs["conversations"]
    assert sync.output == ["Conversation", "ConversationMessage"]
    assert [e.path for e in sync.endpoints] == ["/conversations", "/conversation-messages"]
    # github-app keys its integration with a literal `${PWD}` placeholder
    assert "${PWD}" in load_config(CORPUS / "github-app.yaml").integrations
    # pennylane refers to an undefined model in a field: a warning, read as a literal like Nango
    penny = load_config(CORPUS / "pennylane.yaml")
    assert any("unknown model 'InvoiceSource'" in w.message for w in penny.warnings)
    # scopes given as one comma-separated string
    avalara = load_config(CORPUS / "avalara.yaml").integrations["${PWD}"]
    scopes = avalara.actions["create-transaction"].scopes
    assert scopes[:3] == ["AccountAdmin", "AccountOperator", "AccountUser"]


# ------------------------------------------------------------------------------------------ spine


def test_spine_example() -> None:
    config = parse_config(SPINE)
    github = config.integrations["github"]
    assert github.unique_key == "github"
    issues = github.syncs["issues"]
    assert issues.runs == "every 30min"
    assert issues.interval_seconds == 1800
    assert issues.output == ["Issue"]
    assert issues.endpoints == [EndpointSpec(method="GET", path="/issues")]
    assert issues.sync_type == "incremental"
    assert issues.track_deletes is True
    assert issues.auto_start is False
    assert issues.input == "RepoFilter"
    assert issues.scopes == ["repo", "read:user"]
    assert issues.version == "1.0.0"
    assert issues.description == "All issues of the connected repositories."
    assert issues.webhook_subscriptions == ["issues"]

    create = github.actions["create-issue"]
    assert create.endpoints == [EndpointSpec(method="POST", path="/issues")]
    assert (create.input, create.output, create.scopes) == ("CreateIssue", "Issue", ["repo"])
    get = github.actions["get-issue"]
    assert get.endpoints == [EndpointSpec(method="POST", path="/issue")]  # actions default to POST
    assert get.output == "Issue | null"
    assert github.on_events == {
        "post-connection-creation": ["setup-webhooks"],
        "pre-connection-deletion": ["remove-webhooks"],
    }

    fields = {f.name: f for f in config.model_fields_of("Issue")}
    assert list(fields) == ["created_at", "updated_at", "id", "title", "state", "labels", "author"]
    assert fields["updated_at"].optional and not fields["id"].optional
    assert fields["author"].type == "User | null"
    assert config.models["Issue"].extends == ["Timestamps"]
    assert config.models["Issue"].raw["state"] == "open | closed"
    assert config.warnings == []


def test_defaults() -> None:
    config = parse(with_models("syncs:\n  issues:\n    runs: every hour\n    output: Issue\n", ISSUE_MODEL))
    sync = config.integrations["github"].syncs["issues"]
    assert (sync.sync_type, sync.track_deletes, sync.auto_start) == ("full", False, True)
    assert (sync.endpoints, sync.scopes, sync.webhook_subscriptions) == ([], [], [])
    assert (sync.input, sync.version, sync.description) == (None, None, None)


def test_endpoint_forms() -> None:
    config = parse(
        with_models(
            "syncs:\n"
            "  issues:\n    runs: every hour\n    output: [Issue, Comment]\n"
            "    endpoint:\n      - /issues\n"
            "      - method: get\n        path: /comments\n        group: Comments\n"
            "actions:\n"
            "  a:\n    endpoint: patch /a\n"
            "  b:\n    endpoint:\n      path: /b\n",
            ISSUE_MODEL + "Comment:\n  id: number\n",
        )
    )
    github = config.integrations["github"]
    assert github.syncs["issues"].endpoints == [
        EndpointSpec(method="GET", path="/issues"),
        EndpointSpec(method="GET", path="/comments", group="Comments"),
    ]
    assert github.actions["a"].endpoints == [EndpointSpec(method="PATCH", path="/a")]
    assert github.actions["b"].endpoints == [EndpointSpec(method="POST", path="/b")]


def test_sync_type_case_insensitive_and_scopes_list() -> None:
    config = parse(
        with_models(
            "syncs:\n  issues:\n    runs: every hour\n    output: Issue\n    sync_type: INCREMENTAL\n"
            "    scopes:\n      - a\n      - b\n    webhook-subscriptions: [x, y]\n",
            ISSUE_MODEL,
        )
    )
    sync = config.integrations["github"].syncs["issues"]
    assert (sync.sync_type, sync.scopes, sync.webhook_subscriptions) == (
        "incremental",
        ["a", "b"],
        ["x", "y"],
    )


def test_legacy_post_connection_scripts() -> None:
    config = parse(with_models("post-connection-scripts:\n  - fetch-account\n", ISSUE_MODEL))
    assert config.integrations["github"].on_events == {"post-connection-creation": ["fetch-account"]}


def test_model_features() -> None:
    config = parse(
        with_models(
            "",
            "Base:\n  id: integer\n"
            "Other:\n  name: varchar\n"
            "Both:\n  __extends: Base, Other\n  __string: number\n"
            "  nested?:\n    deep: bool\n  list_of:\n    - a: string\n  typed: Other[]\n"
            "  lit: true | false | null | 5\n  enum: Inbound | Outbound\n  when: date\n  anything: any\n",
        )
    )
    both = config.models["Both"]
    assert both.extends == ["Base", "Other"]
    assert both.string_map is not None and both.string_map.type == "number"
    fields = {f.name: f for f in config.model_fields_of("Both")}
    assert list(fields)[:2] == ["id", "name"]
    assert fields["nested"].type == "object" and fields["nested"].optional
    assert fields["nested"].nested == {"deep": "bool"}
    assert fields["list_of"].type == "object[]" and fields["list_of"].nested == {"a": "string"}
    assert fields["typed"].type == "Other[]"
    kinds = [(a.kind, a.value) for a in parse_type(fields["lit"].type, config.models)]
    assert kinds == [("literal", True), ("literal", False), ("null", None), ("literal", 5)]
    assert [a.kind for a in parse_type("Other[] | string", config.models)] == ["model", "alias"]
    assert parse_type("Other[]", config.models)[0].array == 1


def test_yaml_1_1_words_stay_strings() -> None:
    # js-yaml (Nango) reads `on:`/`yes` as text; PyYAML would turn them into booleans.
    config = parse(with_models("", "Flags:\n  on: yes\n  off?: string\n"))
    assert [(f.name, f.type) for f in config.models["Flags"].fields] == [("on", "yes"), ("off", "string")]


def test_script_module_path() -> None:
    assert script_module_path("github", "syncs", "issues") == "github/syncs/issues.py"
    assert script_module_path("github", "actions", "get-issue") == "github/actions/get_issue.py"
    assert (
        script_module_path("google-mail", "on-events", "post-connection-creation")
        == "google-mail/on-events/post_connection_creation.py"
    )


def test_load_config_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nango.yaml"
    path.write_text("integrations:\n  github:\n    sincs: {}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (
        str(info.value) == f"{path}:3:5: unknown key 'sincs' in integration 'github'; did you mean 'syncs'?"
    )


# ------------------------------------------------------------------------------------------ errors


def test_config_error_shape() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("integrations:\n  github:\n    sincs: {}\n    actoins: {}\n", filename="x/nango.yaml")
    err = info.value
    assert isinstance(err, OrchestratorError) and err.terminal
    assert str(err) == (
        "x/nango.yaml:3:5: unknown key 'sincs' in integration 'github'; did you mean 'syncs'?\n"
        "x/nango.yaml:4:5: unknown key 'actoins' in integration 'github'; did you mean 'actions'?"
    )
    assert err.issues[0] == ConfigIssue(
        file="x/nango.yaml",
        line=3,
        col=5,
        message="unknown key 'sincs' in integration 'github'; did you mean 'syncs'?",
    )
    again = pickle.loads(pickle.dumps(err))
    assert again.issues == err.issues and str(again) == str(err)


def test_yaml_syntax_error() -> None:
    assert errors("integrations:\n  github: [\n") == [
        "nango.yaml:3:1: YAML syntax error: expected the node content, but found '<stream end>'"
        " (while parsing a flow node)"
    ]


def test_yaml_syntax_error_bad_indent() -> None:
    assert errors("integrations:\n  github:\n    syncs: {}\n   actions: {}\n") == [
        "nango.yaml:4:4: YAML syntax error: expected <block end>, but found '<block mapping start>'"
        " (while parsing a block mapping)"
    ]


def test_top_level_shape() -> None:
    assert errors("# nothing\n") == [
        "nango.yaml:1:1: the file is empty; expected 'integrations' and 'models'"
    ]
    assert errors("- a\n") == [
        "nango.yaml:1:1: nango.yaml must be a mapping with 'integrations' and 'models'"
    ]
    assert errors("models: {}\nintegration: {}\n") == [
        "nango.yaml:1:1: missing 'integrations' at the top level",
        "nango.yaml:2:1: unknown key 'integration' in the top level; did you mean 'integrations'?",
    ]


def test_unknown_sync_key() -> None:
    text = with_models(
        "syncs:\n  issues:\n    runs: every hour\n    output: Issue\n"
        "    trak_deletes: true\n    colour: red\n",
        ISSUE_MODEL,
    )
    assert errors(text) == [
        "nango.yaml:7:9: unknown key 'trak_deletes' in sync 'issues'; did you mean 'track_deletes'?",
        "nango.yaml:8:9: unknown key 'colour' in sync 'issues'",
    ]


def test_unknown_action_and_endpoint_keys() -> None:
    text = with_models(
        "actions:\n  a:\n    outptu: Issue\n    endpoint:\n      methd: GET\n      path: /a\n", ISSUE_MODEL
    )
    assert errors(text) == [
        "nango.yaml:5:9: unknown key 'outptu' in action 'a'; did you mean 'output'?",
        "nango.yaml:7:11: unknown key 'methd' in endpoint of action 'a'; did you mean 'method'?",
    ]


def test_unknown_event() -> None:
    text = with_models("on-events:\n  post-connection: [x]\n", ISSUE_MODEL)
    assert errors(text) == [
        "nango.yaml:4:7: unknown key 'post-connection' in on-events of integration 'github';"
        " did you mean 'post-connection-creation'?"
    ]


def test_both_on_events_and_post_connection_scripts() -> None:
    text = with_models("on-events:\n  validate-connection: [v]\npost-connection-scripts: [p]\n", ISSUE_MODEL)
    assert errors(text) == [
        "nango.yaml:5:5: integration 'github' has both 'post-connection-scripts' and 'on-events';"
        " move them to on-events"
    ]


def test_missing_runs_and_output() -> None:
    text = with_models("syncs:\n  issues:\n    endpoint: GET /issues\n", ISSUE_MODEL)
    assert errors(text) == [
        "nango.yaml:4:7: sync 'issues' is missing 'runs'",
        "nango.yaml:4:7: sync 'issues' is missing 'output'",
    ]


def test_invalid_runs() -> None:
    text = with_models("syncs:\n  issues:\n    runs: every 10s\n    output: Issue\n", ISSUE_MODEL)
    (issue,) = errors(text)
    assert issue.startswith(
        "nango.yaml:5:15: invalid schedule 'every 10s': shorter than the 30s minimum;"
        " accepted: 'every <number> <unit>'"
    )
    text = with_models("syncs:\n  issues:\n    runs: twice a day\n    output: Issue\n", ISSUE_MODEL)
    (issue,) = errors(text)
    assert issue.startswith("nango.yaml:5:15: invalid schedule 'twice a day': unknown interval; accepted: ")


def test_bad_values() -> None:
    text = with_models(
        "syncs:\n  issues:\n    runs: every hour\n    output: Issue\n    sync_type: delta\n"
        "    track_deletes: yes\n    auto_start: [true]\n",
        ISSUE_MODEL,
    )
    assert errors(text) == [
        "nango.yaml:7:20: sync_type of sync 'issues' must be 'incremental' or 'full', got 'delta'",
        "nango.yaml:8:24: 'track_deletes' of sync 'issues' must be true or false, got 'yes'",
        "nango.yaml:9:21: 'auto_start' of sync 'issues' must be true or false, got 'a sequence'",
    ]


def test_output_model_missing() -> None:
    text = with_models("syncs:\n  issues:\n    runs: every hour\n    output: Isue\n", ISSUE_MODEL)
    assert errors(text) == [
        "nango.yaml:6:17: unknown model 'Isue' in output of sync 'issues'; did you mean 'Issue'?"
    ]


def test_output_model_without_id() -> None:
    text = with_models(
        "syncs:\n  issues:\n    runs: every hour\n    output: Issue\n", "Issue:\n  key: string\n"
    )
    assert errors(text) == [
        "nango.yaml:6:17: model 'Issue' (output of sync 'issues') has no 'id' field; records need one"
    ]


def test_output_id_via_extends_is_enough() -> None:
    text = with_models(
        "syncs:\n  issues:\n    runs: every hour\n    output: Issue\n",
        "Base:\n  id: string\nMiddle:\n  __extends: Base\nIssue:\n  __extends: Middle\n  title: string\n",
    )
    assert parse(text).model_fields_of("Issue")[0].name == "id"


def test_model_output_of_two_syncs() -> None:
    text = with_models(
        "syncs:\n  a:\n    runs: every hour\n    output: Issue\n"
        "  b:\n    runs: every hour\n    output: Issue\n"
        "actions:\n  c:\n    output: Issue\n",  # an action may return a sync's model
        ISSUE_MODEL,
    )
    assert errors(text) == [
        "nango.yaml:9:17: model 'Issue' is already the output of sync 'a' in integration 'github';"
        " a model can be the output of only one sync per integration"
    ]


def test_same_model_in_two_integrations_is_fine() -> None:
    text = (
        "integrations:\n"
        "  one:\n    syncs:\n      a:\n        runs: every hour\n        output: Issue\n"
        "  two:\n    syncs:\n      a:\n        runs: every hour\n        output: Issue\n"
        "models:\n  Issue:\n    id: string\n"
    )
    assert set(parse(text).integrations) == {"one", "two"}


def test_duplicate_endpoint() -> None:
    text = with_models(
        "syncs:\n  a:\n    runs: every hour\n    output: Issue\n    endpoint: GET /issues\n"
        "actions:\n  b:\n    endpoint:\n      method: get\n      path: /issues\n",
        ISSUE_MODEL,
    )
    assert errors(text) == [
        "nango.yaml:11:11: endpoint 'GET /issues' of action 'b' is already used by sync 'a'"
    ]


def test_bad_endpoints() -> None:
    text = with_models(
        "actions:\n"
        "  a:\n    endpoint: FETCH /a\n"
        "  b:\n    endpoint: GET b\n"
        "  c:\n    endpoint: GET /c extra\n"
        "  d:\n    endpoint:\n      method: GET\n",
        ISSUE_MODEL,
    )
    assert errors(text) == [
        "nango.yaml:5:19: unknown method 'FETCH' in endpoint of action 'a'; did you mean 'PATCH'?",
        "nango.yaml:7:19: path 'b' of the endpoint of action 'b' must start with '/'",
        "nango.yaml:9:19: endpoint of action 'c' must look like 'GET /path', got 'GET /c extra'",
        "nango.yaml:12:11: endpoint of action 'd' is missing 'path'",
    ]


def test_endpoints_must_match_outputs() -> None:
    text = with_models(
        "syncs:\n  a:\n    runs: every hour\n    output: [Issue, Other]\n    endpoint: GET /a\n",
        ISSUE_MODEL + "Other:\n  id: string\n",
    )
    assert errors(text) == [
        "nango.yaml:7:19: sync 'a' has 2 output model(s) but 1 endpoint(s); give one per output"
    ]


def test_unknown_input_and_output_models() -> None:
    text = with_models(
        "syncs:\n  a:\n    runs: every hour\n    output: Issue\n    input: Metadta\n"
        "actions:\n  b:\n    input: Isue[]\n    output: Other | null\n",
        ISSUE_MODEL + "Metadata:\n  repo: string\n",
    )
    assert errors(text) == [
        "nango.yaml:7:16: unknown model 'Metadta' in input of sync 'a'; did you mean 'Metadata'?",
        "nango.yaml:10:16: unknown model 'Isue' in input of action 'b'; did you mean 'Issue'?",
        "nango.yaml:11:17: unknown model 'Other' in output of action 'b'",
    ]


def test_literal_inputs_are_fine() -> None:
    text = with_models("actions:\n  b:\n    input: string\n    output: ok | failed\n", ISSUE_MODEL)
    action = parse(text).integrations["github"].actions["b"]
    assert (action.input, action.output) == ("string", "ok | failed")


def test_unknown_model_in_field_is_a_warning() -> None:
    config = parse(with_models("", "Issue:\n  id: string\n  author: Usr | null\n  team: Team\n  cur: EUR\n"))
    assert [str(w) for w in config.warnings] == [
        "nango.yaml:6:13: unknown model 'Usr' in field 'author' of model 'Issue', read as a string literal",
        "nango.yaml:7:11: unknown model 'Team' in field 'team' of model 'Issue', read as a string literal",
    ]


def test_enum_of_capitalised_words_is_not_a_model_reference() -> None:
    config = parse(with_models("", "Call:\n  direction: Inbound | Outbound | Conference\n  cur?: EUR\n"))
    assert config.warnings == []


def test_extends_unknown_and_cycles() -> None:
    text = with_models(
        "",
        "A:\n  __extends: B\n  a: string\nB:\n  __extends: A\nC:\n  __extends: C\nD:\n  __extends: Bee, A\n",
    )
    assert errors(text) == [
        "nango.yaml:5:16: model 'A' extends itself: A -> B -> A",
        "nango.yaml:10:16: model 'C' extends itself: C -> C",
        "nango.yaml:12:16: unknown model 'Bee' in __extends of model 'D'",
    ]


def test_model_syntax_errors() -> None:
    text = with_models(
        "",
        "Bad-Name:\n  a: string\nlist:\n  a: string\nM:\n  a: Record<string, any>\n  b: string |\n"
        "  c: [string, number]\n",
    )
    assert errors(text) == [
        "nango.yaml:4:3: model name 'Bad-Name' must be letters, digits and '_', not starting with a digit",
        "nango.yaml:6:3: model name 'list' is reserved in Python; pick another name",
        "nango.yaml:9:8: type 'Record<string, any>' in field 'a' of model 'M' is not supported;"
        " use a nested mapping or '__string'",
        "nango.yaml:10:8: empty type in field 'b' of model 'M': 'string |'",
        "nango.yaml:11:8: field 'c' of model 'M':"
        " a list must hold exactly one item, the type of its elements",
    ]


def test_duplicate_keys() -> None:
    text = with_models(
        "syncs:\n  a:\n    runs: every hour\n    output: Issue\n"
        "  a:\n    runs: every day\n    output: Issue\n",
        ISSUE_MODEL,
    )
    assert errors(text) == ["nango.yaml:7:7: duplicate key 'a' in syncs of integration 'github'"]


def test_script_names() -> None:
    text = with_models("actions:\n  get-issue: {}\n  get_issue: {}\n  'bad name': {}\n", ISSUE_MODEL)
    assert errors(text) == [
        "nango.yaml:5:7: action 'get_issue' and 'get-issue' in integration 'github'"
        " would share actions/get_issue.py",
        "nango.yaml:6:7: script name 'bad name' in integration 'github' must be letters, digits, '-' and '_'",
    ]


def test_all_issues_reported_at_once() -> None:
    text = with_models(
        "syncs:\n  a:\n    runs: every 1s\n    output: Nope\n    sync_typ: full\n",
        "Issue:\n  __extends: Missing\n",
    )
    assert len(errors(text)) == 4

"""Linear issues: POST /graphql (https://developers.linear.app/docs/graphql/working-with-the-graphql-api).

Relay-style pagination: `first` and `after`, `pageInfo { hasNextPage endCursor }`; incremental runs
filter on `updatedAt` greater than the last successful run.
"""

from models import LinearIssue

from orchestrator.sdk import NangoSync

QUERY = """
query Issues($first: Int!, $after: String, $filter: IssueFilter) {
  issues(first: $first, after: $after, filter: $filter, orderBy: updatedAt) {
    nodes { id identifier title description createdAt updatedAt state { name } team { id } assignee { id } }
    pageInfo { hasNextPage endCursor }
  }
}
""".strip()


async def fetch_data(nango: NangoSync) -> None:
    variables: dict = {"first": 50, "after": None}
    if nango.last_sync_date:
        variables["filter"] = {"updatedAt": {"gt": nango.last_sync_date.isoformat()}}
    total = 0
    while True:
        response = await nango.post("/graphql", data={"query": QUERY, "variables": variables}, retries=5)
        if response.data.get("errors"):
            raise RuntimeError(f"Linear answered {response.data['errors'][0].get('message')}")
        issues = response.data["data"]["issues"]
        await nango.batch_save([LinearIssue(
            id=node["id"], identifier=node["identifier"], title=node["title"], description=node.get("description"),
            state=node["state"]["name"], team_id=node["team"]["id"],
            assignee_id=(node.get("assignee") or {}).get("id"), created_at=node["createdAt"],
            updated_at=node["updatedAt"]) for node in issues["nodes"]], "LinearIssue")
        total += len(issues["nodes"])
        if not issues["pageInfo"]["hasNextPage"]:
            break
        variables["after"] = issues["pageInfo"]["endCursor"]
    await nango.log(f"saved {total} issues")

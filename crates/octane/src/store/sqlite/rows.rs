//! Query pieces the workflow and signal modules both need.

/// Narrows a query over `workflows` to those carrying every tag in `tags`,
/// binding each key and value as the next parameters.
pub(super) fn push_tag_filter<'a>(
    sql: &mut String,
    params: &mut Vec<String>,
    tags: impl IntoIterator<Item = (&'a String, &'a String)>,
) {
    for (k, v) in tags {
        params.push(k.clone());
        params.push(v.clone());
        sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM workflow_tags t WHERE t.workflow_id = workflows.id \
             AND t.key = ?{} AND t.value = ?{})",
            params.len() - 1,
            params.len()
        ));
    }
}

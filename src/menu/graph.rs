//! `knappval graph`: the validated menu drawn for the documentation, as Graphviz DOT or a Mermaid flowchart.
//! Menus are boxes, functions are leaves, options are edges labelled with their key; fallbacks, failovers and
//! closed-hours routes are dashed. Reads the [`Menu`] only; the caller prints the text.

use std::collections::BTreeSet;

use super::hours::ClosedAction;
use super::model::{Choice, FailureAction, Menu, ROOT_MENU};

/// A node of the drawing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Node {
    /// Where a call starts: only drawn when the service has opening hours.
    Start,
    Menu(String),
    Function(String),
    Hangup,
}

/// One edge: from, to, label, dashed.
struct Edge {
    from: Node,
    to: Node,
    label: String,
    dashed: bool,
}

fn edges(menu: &Menu) -> Vec<Edge> {
    let mut edges = Vec::new();
    let mut edge = |from: &Node, to: Node, label: String, dashed: bool| {
        edges.push(Edge {
            from: from.clone(),
            to,
            label,
            dashed,
        })
    };
    if let Some(hours) = &menu.hours {
        edge(
            &Node::Start,
            Node::Menu(ROOT_MENU.to_owned()),
            "open".into(),
            false,
        );
        edge(
            &Node::Start,
            closed_target(&hours.closed.then),
            "closed".into(),
            true,
        );
    }
    for node in menu.menus.values() {
        let from = Node::Menu(node.id.clone());
        for (digit, choice) in &node.options {
            for (to, label) in choice_targets(menu, &node.id, choice) {
                let label = match label {
                    Some(what) => format!("{digit} {what}"),
                    None => digit.to_string(),
                };
                edge(&from, to, label, false);
            }
        }
        for (to, label) in choice_targets(menu, &node.id, &node.fallback) {
            let label = match label {
                Some(what) => format!("fallback {what}"),
                None => "fallback".to_owned(),
            };
            edge(&from, to, label, true);
        }
    }
    for function in menu.functions.values() {
        let from = Node::Function(function.id.clone());
        if let FailureAction::Route(next) = &function.on_failure {
            edge(
                &from,
                Node::Function(next.clone()),
                "on failure".into(),
                true,
            );
        }
        if let Some(hours) = &function.hours
            && let ClosedAction::Route(next) = &hours.closed.then
        {
            edge(&from, Node::Function(next.clone()), "closed".into(), true);
        }
    }
    edges
}

fn closed_target(then: &ClosedAction) -> Node {
    match then {
        ClosedAction::Route(function) => Node::Function(function.clone()),
        ClosedAction::Hangup => Node::Hangup,
    }
}

/// Where a choice in menu `from` leads; `back` leads to every menu with an option into `from` (the root's own
/// `back` stays at the root).
fn choice_targets(menu: &Menu, from: &str, choice: &Choice) -> Vec<(Node, Option<&'static str>)> {
    match choice {
        Choice::Route(function) => vec![(Node::Function(function.clone()), None)],
        Choice::Menu(id) => vec![(Node::Menu(id.clone()), None)],
        Choice::Repeat => vec![(Node::Menu(from.to_owned()), Some("repeat"))],
        Choice::Hangup => vec![(Node::Hangup, None)],
        Choice::Back => {
            let parents: BTreeSet<&str> = menu
                .menus
                .values()
                .filter(|node| {
                    node.options
                        .values()
                        .any(|c| matches!(c, Choice::Menu(to) if to == from))
                })
                .map(|node| node.id.as_str())
                .filter(|id| *id != from)
                .collect();
            if parents.is_empty() {
                return vec![(Node::Menu(from.to_owned()), Some("back"))];
            }
            parents
                .into_iter()
                .map(|id| (Node::Menu(id.to_owned()), Some("back")))
                .collect()
        }
    }
}

fn nodes(menu: &Menu, edges: &[Edge]) -> BTreeSet<Node> {
    let mut nodes: BTreeSet<Node> = menu.menus.keys().cloned().map(Node::Menu).collect();
    nodes.extend(menu.functions.keys().cloned().map(Node::Function));
    for edge in edges {
        nodes.insert(edge.from.clone());
        nodes.insert(edge.to.clone());
    }
    nodes
}

fn label(menu: &Menu, node: &Node) -> String {
    match node {
        Node::Start => "call".to_owned(),
        Node::Menu(id) => match menu.menus.get(id) {
            Some(m) => format!("{id}\n{}", m.prompt),
            None => id.clone(),
        },
        Node::Function(id) => match menu.functions.get(id) {
            Some(f) if f.hours.is_some() => format!("{}\n({id}, own hours)", f.name),
            Some(f) => format!("{}\n({id})", f.name),
            None => id.clone(),
        },
        Node::Hangup => "hang up".to_owned(),
    }
}

/// Graphviz DOT (`dot -Tsvg menu.dot > menu.svg`).
pub fn dot(menu: &Menu) -> String {
    let edges = edges(menu);
    let id = |node: &Node| match node {
        Node::Start => "\"start\"".to_owned(),
        Node::Menu(id) => format!("\"menu:{id}\""),
        Node::Function(id) => format!("\"function:{id}\""),
        Node::Hangup => "\"hangup\"".to_owned(),
    };
    let quote = |text: &str| {
        let escaped = text
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        format!("\"{escaped}\"")
    };
    let mut out = format!(
        "digraph {} {{\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n",
        quote(&menu.name)
    );
    for node in nodes(menu, &edges) {
        let shape = match node {
            Node::Start => "circle",
            Node::Menu(_) => "box",
            Node::Function(_) => "ellipse",
            Node::Hangup => "plaintext",
        };
        out.push_str(&format!(
            "  {} [shape={shape}, label={}];\n",
            id(&node),
            quote(&label(menu, &node))
        ));
    }
    for edge in &edges {
        let style = if edge.dashed { ", style=dashed" } else { "" };
        out.push_str(&format!(
            "  {} -> {} [label={}{style}];\n",
            id(&edge.from),
            id(&edge.to),
            quote(&edge.label)
        ));
    }
    out.push_str("}\n");
    out
}

/// A Mermaid flowchart (GitHub and GitLab render it in Markdown).
pub fn mermaid(menu: &Menu) -> String {
    let edges = edges(menu);
    let nodes = nodes(menu, &edges);
    // Mermaid ids are plain words; menu and function ids may hold '-', so number the nodes instead.
    let index: Vec<&Node> = nodes.iter().collect();
    let id = |node: &Node| {
        let n = index.iter().position(|n| *n == node).unwrap_or(0);
        match node {
            Node::Start => "start".to_owned(),
            Node::Menu(_) => format!("menu{n}"),
            Node::Function(_) => format!("function{n}"),
            Node::Hangup => "hangup".to_owned(),
        }
    };
    let quote = |text: &str| format!("\"{}\"", text.replace('"', "#quot;").replace('\n', "<br>"));
    let mut out = String::from("flowchart LR\n");
    for node in &nodes {
        let text = quote(&label(menu, node));
        let shape = match node {
            Node::Start => format!("(({text}))"),
            Node::Menu(_) => format!("[{text}]"),
            Node::Function(_) => format!("([{text}])"),
            Node::Hangup => format!("{{{{{text}}}}}"),
        };
        out.push_str(&format!("  {}{shape}\n", id(node)));
    }
    for edge in &edges {
        let arrow = if edge.dashed { "-.->" } else { "-->" };
        out.push_str(&format!(
            "  {} {arrow}|{}| {}\n",
            id(&edge.from),
            quote(&edge.label),
            id(&edge.to)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn shipped() -> Menu {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        super::super::load_layout(&root.join("menus/kommunsupport.yaml")).unwrap()
    }

    #[test]
    fn dot_draws_menus_functions_and_dashed_fallbacks() {
        let text = dot(&shipped());
        assert!(text.starts_with("digraph \"Kommunsupport\" {\n"), "{text}");
        assert!(
            text.contains("  \"menu:root\" [shape=box, label=\"root\\nmain-menu\"];\n"),
            "{text}"
        );
        assert!(
            text.contains("  \"function:it\" [shape=ellipse, label=\"IT Kundservice\\n(it)\"];\n"),
            "{text}"
        );
        assert!(
            text.contains("  \"menu:root\" -> \"function:it\" [label=\"3\"];\n"),
            "{text}"
        );
        assert!(
            text.contains("  \"menu:root\" -> \"menu:care\" [label=\"6\"];\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "  \"menu:root\" -> \"function:kundtjanst\" [label=\"fallback\", style=dashed];\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("  \"menu:care\" -> \"menu:root\" [label=\"# back\"];\n"),
            "{text}"
        );
        assert!(
            text.contains("  \"function:it\" -> \"function:kundtjanst\" [label=\"on failure\", style=dashed];\n"),
            "{text}"
        );
        assert!(text.ends_with("}\n"));
    }

    #[test]
    fn mermaid_draws_the_same_with_numbered_ids() {
        let text = mermaid(&shipped());
        assert!(text.starts_with("flowchart LR\n"), "{text}");
        let root = text
            .lines()
            .find(|l| l.contains("[\"root<br>main-menu\"]"))
            .and_then(|l| l.split('[').next())
            .map(str::trim)
            .expect("the root menu node");
        let it = text
            .lines()
            .find(|l| l.contains("([\"IT Kundservice<br>(it)\"])"))
            .and_then(|l| l.split('(').next())
            .map(str::trim)
            .expect("the it function node");
        assert!(
            text.contains(&format!("  {root} -->|\"3\"| {it}\n")),
            "{text}"
        );
        assert!(text.contains("-.->|\"fallback\"|"), "{text}");
    }
}

//! What `knappval check` warns about in a menu that loads: things that are allowed but are usually a mistake on a
//! busy week (a recording nobody plays, a submenu nobody reaches, hours that never open). Warnings never make a
//! menu invalid. Reads the validated [`Menu`] and lists the prompts directory; changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::model::{Choice, Menu, ROOT_MENU};
use super::validate::{prompt_files, unreachable_menus};

/// Menus nested deeper than this (the top menu is depth 1) get a warning: callers give up on long key sequences.
pub const MAX_MENU_DEPTH: usize = 4;

/// Every warning for `menu`, in a stable order, as one line each (without the file label).
pub fn warnings(menu: &Menu, prompts_dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    out.extend(unused_prompts(menu, prompts_dir));
    out.extend(unreachable_options(menu));
    out.extend(deep_menus(menu));
    out.extend(never_open(menu));
    out.extend(queues_without_agents(menu));
    out
}

/// Queues written with `agents: []`: every caller waits out `max_wait` and then overflows.
fn queues_without_agents(menu: &Menu) -> Vec<String> {
    menu.functions
        .values()
        .filter_map(|function| function.queue.as_ref().map(|queue| (function, queue)))
        .filter(|(_, queue)| queue.agents.is_empty())
        .map(|(function, queue)| {
            format!(
                "the queue of '{}' has no agents: its callers hear the music for max_wait ({}s), then the overflow",
                function.id,
                queue.max_wait.as_secs()
            )
        })
        .collect()
}

/// WAV files in the prompts directory that no key of the menu names.
fn unused_prompts(menu: &Menu, prompts_dir: &Path) -> Vec<String> {
    let used = menu.prompt_ids();
    let unused = prompt_files(prompts_dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|id| !used.contains(id));
    unused
        .into_iter()
        .map(|id| {
            format!(
                "prompt '{id}' ({}) is never used by the menu",
                prompts_dir.join(format!("{id}.wav")).display()
            )
        })
        .collect()
}

/// Options of menus no caller can get to: they can never be chosen.
fn unreachable_options(menu: &Menu) -> Vec<String> {
    unreachable_menus(menu)
        .into_iter()
        .filter_map(|id| {
            let node = menu.menus.get(id)?;
            if node.options.is_empty() {
                return None;
            }
            let keys: Vec<String> = node.options.keys().map(char::to_string).collect();
            Some(format!(
                "options {} of menu '{id}' cannot be reached: no option or fallback leads to '{id}'",
                keys.join(", ")
            ))
        })
        .collect()
}

/// Menus whose shortest way from the top menu is deeper than [`MAX_MENU_DEPTH`].
fn deep_menus(menu: &Menu) -> Vec<String> {
    menu_levels(menu)
        .into_iter()
        .map(|(id, level)| (id, level + 1))
        .filter(|(_, depth)| *depth > MAX_MENU_DEPTH)
        .map(|(id, depth)| {
            format!(
                "menu '{id}' is at depth {depth} (the top menu is 1; at most {MAX_MENU_DEPTH} is advised): \
                 callers who must press that many keys hang up; move it closer to the top"
            )
        })
        .collect()
}

/// Each reachable menu's level below the top menu (the top menu is 0), by the shortest way.
pub fn menu_levels(menu: &Menu) -> BTreeMap<&str, usize> {
    let mut levels: BTreeMap<&str, usize> = BTreeMap::from([(ROOT_MENU, 0)]);
    let mut frontier = vec![ROOT_MENU];
    let mut level = 0;
    while !frontier.is_empty() {
        level += 1;
        let mut next = Vec::new();
        for id in frontier {
            let Some(node) = menu.menus.get(id) else {
                continue;
            };
            for choice in node.options.values() {
                if let Choice::Menu(to) = choice
                    && !levels.contains_key(to.as_str())
                {
                    levels.insert(to, level);
                    next.push(to.as_str());
                }
            }
        }
        frontier = next;
    }
    levels
}

/// Hours with no open range anywhere: every call would hear the closed message.
fn never_open(menu: &Menu) -> Vec<String> {
    let mut out = Vec::new();
    if menu.hours.as_ref().is_some_and(|h| h.never_open()) {
        out.push(
            "the service's hours are never open: every call gets the closed message; give `weekly:` some \
             ranges, e.g. mon-fri: \"08:00-16:30\""
                .to_owned(),
        );
    }
    let closed: BTreeSet<&str> = menu
        .functions
        .values()
        .filter(|f| f.hours.as_ref().is_some_and(|h| h.never_open()))
        .map(|f| f.id.as_str())
        .collect();
    for id in closed {
        out.push(format!(
            "function '{id}' has hours that are never open: its callers always get its closed message; give \
             its `weekly:` some ranges"
        ));
    }
    out
}

//! Warnings about a policy that compiles: what it says that cannot be what
//! its author meant, though the filters can run it. `tollgate validate`
//! prints them (and `--deny-warnings` fails on them); the filters do not
//! refuse such a policy.
//!
//! - Routes that can never be chosen: for every request one matches,
//!   another takes precedence under `route::Rank` (the real precedence:
//!   exact path, longest literal, template over prefix, host, method, then
//!   the earliest route). Only certain cases are reported: the same path
//!   match listed again, and a path match that outranks another on every
//!   path the other matches (`/**` over no path; `prefix: /p` under
//!   `template: /p/**`), each with methods and hosts that cover the other's.
//! - Clusters the filters call: remote JWKS fetches, the rate limit
//!   service (`ratelimit.service.cluster`) and the audit sink
//!   (`audit.sink.cluster`). One JWKS host should be fetched through one
//!   cluster; an Istio name (`outbound|PORT|SUBSET|HOST`) should name the
//!   URI's host and port; one policy runs either in a mesh or in a plain
//!   Envoy, so Istio names and plain names should not be mixed, whichever
//!   party they call; and the audit sink, which takes POSTed batches over
//!   HTTP/1.1, should have a cluster of its own (the rate limit service
//!   answers gRPC, a JWKS host serves keys).

use super::errors::{index, join, PolicyError};
use super::wire::PolicyDoc;
use super::Policy;
use crate::jwt::config::{istio_cluster, split_uri};
use crate::route::{method_covers, HostMatch, PathMatch, RouteMatch, TemplateSegment};
use std::collections::HashMap;

/// Every warning about `policy`, compiled from `doc`.
pub fn warnings(doc: &PolicyDoc, policy: &Policy) -> Vec<PolicyError> {
    let mut out = Vec::new();
    unreachable_routes(policy, &mut out);
    let any_istio = called_clusters(doc).any(|c| istio_cluster(c).is_some());
    jwks_clusters(doc, any_istio, &mut out);
    service_clusters(doc, any_istio, &mut out);
    out
}

/// Every cluster the policy has the filters call.
fn called_clusters(doc: &PolicyDoc) -> impl Iterator<Item = &str> {
    let jwks = doc
        .jwt
        .providers
        .iter()
        .filter_map(|p| Some(p.remote_jwks.as_ref()?.cluster.as_str()));
    jwks.chain(ratelimit_cluster(doc)).chain(sink_cluster(doc))
}

fn ratelimit_cluster(doc: &PolicyDoc) -> Option<&str> {
    Some(doc.ratelimit.service.as_ref()?.cluster.as_str())
}

fn sink_cluster(doc: &PolicyDoc) -> Option<&str> {
    doc.audit.as_ref()?.sink.cluster.as_deref()
}

const RATELIMIT_AT: &str = "ratelimit.service.cluster";
const SINK_AT: &str = "audit.sink.cluster";

/// The rate limit service's and the audit sink's clusters: plain names
/// among Istio's, and a sink that shares another party's cluster.
fn service_clusters(doc: &PolicyDoc, any_istio: bool, out: &mut Vec<PolicyError>) {
    let named = [(RATELIMIT_AT, ratelimit_cluster(doc)), (SINK_AT, sink_cluster(doc))];
    for (at, cluster) in named.into_iter().filter_map(|(at, c)| Some((at, c?))) {
        if any_istio && istio_cluster(cluster).is_none() {
            out.push(PolicyError::new(at, plain_among_istio(cluster)));
        }
    }
    let Some(sink) = sink_cluster(doc) else { return };
    if let Some((whose, at)) = other_party_of(doc, sink) {
        out.push(PolicyError::new(
            SINK_AT,
            format!(
                "'{sink}' is also {whose} ({at}): the sink takes POSTed event batches and needs a cluster of its own"
            ),
        ));
    }
}

/// Whose cluster `cluster` is besides the sink's, and where it is named.
fn other_party_of(doc: &PolicyDoc, cluster: &str) -> Option<(&'static str, String)> {
    if ratelimit_cluster(doc) == Some(cluster) {
        return Some(("the rate limit service's, which answers gRPC", RATELIMIT_AT.to_string()));
    }
    let i = doc
        .jwt
        .providers
        .iter()
        .position(|p| p.remote_jwks.as_ref().is_some_and(|r| r.cluster == cluster))?;
    Some((
        "a JWKS host's, which serves keys",
        join(&index("jwt.providers", i), "remote_jwks.cluster"),
    ))
}

fn plain_among_istio(cluster: &str) -> String {
    format!(
        "'{cluster}' is a plain cluster name while others are Istio's (outbound|PORT||HOST): a sidecar has \
         only Istio's, a local Envoy only the ones its bootstrap defines"
    )
}

fn unreachable_routes(policy: &Policy, out: &mut Vec<PolicyError>) {
    for (j, shadowed) in policy.routes.iter().enumerate() {
        let winner = policy.routes.iter().enumerate().find_map(|(i, r)| {
            (i != j)
                .then(|| always_wins(&r.matcher, i, &shadowed.matcher, j))
                .flatten()
                .map(|why| (i, r, why))
        });
        if let Some((i, r, why)) = winner {
            out.push(PolicyError::new(
                join(&index("routes", j), "match"),
                format!(
                    "route '{}' can never be chosen: routes[{i}] ('{}') matches every request it matches and takes precedence ({why})",
                    shadowed.name, r.name
                ),
            ));
        }
    }
}

/// Why route `a` (at `i`) takes every request route `b` (at `j`) matches,
/// when that is certain.
fn always_wins(a: &RouteMatch, i: usize, b: &RouteMatch, j: usize) -> Option<&'static str> {
    if a.path == b.path {
        // Equal path ranks: host, then method, then order decide.
        let hosts =
            (a.hosts.is_empty() && b.hosts.is_empty()) || (!b.hosts.is_empty() && hosts_within(&b.hosts, &a.hosts));
        let methods = (a.methods.is_empty() && b.methods.is_empty())
            || (!b.methods.is_empty() && methods_within(&b.methods, &a.methods));
        return (i < j && hosts && methods).then_some("the same path match, listed earlier");
    }
    let why = outranks_everywhere(&a.path, &b.path)?;
    // A higher path rank wins whatever the host and method; `a` must only match.
    let hosts = a.hosts.is_empty() || (!b.hosts.is_empty() && hosts_within(&b.hosts, &a.hosts));
    let methods = a.methods.is_empty() || (!b.methods.is_empty() && methods_within(&b.methods, &a.methods));
    (hosts && methods).then_some(why)
}

/// `a` matches every path `b` matches, always with a higher path rank.
fn outranks_everywhere(a: &PathMatch, b: &PathMatch) -> Option<&'static str> {
    let PathMatch::Template(segments) = a else {
        return None;
    };
    let (last, literals) = segments.split_last()?;
    if *last != TemplateSegment::Rest {
        return None;
    }
    match b {
        // `/**` matches every path, as no path does, and ranks above it.
        PathMatch::Any if literals.is_empty() => Some("a '/**' template outranks a route without a path"),
        // `/p/**` matches `/p` and all under it, as `prefix: /p` does; same
        // literal length, and a template ranks above a prefix.
        PathMatch::Prefix(p) if !literals.is_empty() && joined(literals).as_deref() == Some(p.as_str()) => {
            Some("a template '/p/**' outranks 'prefix: /p' on every path")
        }
        _ => None,
    }
}

/// `/a/b` for literal segments `a`, `b`; `None` if one is not a literal.
fn joined(literals: &[TemplateSegment]) -> Option<String> {
    let mut out = String::new();
    for segment in literals {
        let TemplateSegment::Literal(l) = segment else {
            return None;
        };
        out.push('/');
        out.push_str(l);
    }
    Some(out)
}

/// Every host pattern of `b` is one of `a`'s: `a` matches each host `b`
/// does, with at least the same rank.
fn hosts_within(b: &[HostMatch], a: &[HostMatch]) -> bool {
    b.iter().all(|h| a.contains(h))
}

/// Every request method `b` lists (GET also covers HEAD) is covered by `a`.
fn methods_within(b: &[String], a: &[String]) -> bool {
    let covered = |m: &str| a.iter().any(|listed| method_covers(listed, m));
    b.iter().all(|m| covered(m) && (m != "GET" || covered("HEAD")))
}

/// A provider's remote JWKS: where it sits in the policy and what it names.
struct Fetch<'d> {
    at: String,
    cluster: &'d str,
    /// Lower-case host and the port the URI implies.
    host: String,
    port: u16,
}

/// `any_istio`: some cluster the filters call has an Istio name.
fn jwks_clusters(doc: &PolicyDoc, any_istio: bool, out: &mut Vec<PolicyError>) {
    let fetches: Vec<Fetch<'_>> = doc
        .jwt
        .providers
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let remote = p.remote_jwks.as_ref()?;
            let (host, port) = host_and_port(&remote.uri)?;
            Some(Fetch {
                at: join(&index("jwt.providers", i), "remote_jwks.cluster"),
                cluster: &remote.cluster,
                host,
                port,
            })
        })
        .collect();
    let mut by_host: HashMap<(&str, u16), &Fetch<'_>> = HashMap::new();
    for fetch in &fetches {
        match istio_cluster(fetch.cluster) {
            Some((port, host)) if (host.to_ascii_lowercase(), port) != (fetch.host.clone(), fetch.port) => {
                out.push(PolicyError::new(
                    &fetch.at,
                    format!(
                        "'{}' sends the fetch to {host}:{port}, but the uri names {}:{}; the cluster for the uri is \
                         'outbound|{}||{}' (unless an egress gateway is meant)",
                        fetch.cluster, fetch.host, fetch.port, fetch.port, fetch.host
                    ),
                ))
            }
            None if any_istio => out.push(PolicyError::new(&fetch.at, plain_among_istio(fetch.cluster))),
            _ => {}
        }
        match by_host.get(&(fetch.host.as_str(), fetch.port)) {
            Some(first) if first.cluster != fetch.cluster => out.push(PolicyError::new(
                &fetch.at,
                format!(
                    "{}:{} is fetched through '{}' here and through '{}' at {}: one host, one cluster",
                    fetch.host, fetch.port, fetch.cluster, first.cluster, first.at
                ),
            )),
            Some(_) => {}
            None => {
                by_host.insert((fetch.host.as_str(), fetch.port), fetch);
            }
        }
    }
}

/// The lower-case host of a JWKS URI and its port (443 or 80 by scheme).
fn host_and_port(uri: &str) -> Option<(String, u16)> {
    let (authority, _) = split_uri(uri).ok()?;
    let default = if uri.starts_with("https://") { 443 } else { 80 };
    let (host, port) = match authority.rsplit_once(':') {
        // `[::1]` alone has colons but no port.
        Some((host, port)) if !port.ends_with(']') => (host, port.parse().ok()?),
        _ => (authority, default),
    };
    Some((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests;

//! The command line's client sub-commands: each talks to a server's admin
//! API (or data plane) and prints a table, or JSON with `--json`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use futures_util::StreamExt as _;
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Client, Connection, describe_error};

/// `picloud deploy FILE`.
#[derive(clap::Args, Debug)]
pub struct DeployArgs {
    /// The script's source file.
    pub file: PathBuf,
    /// Script name (default: the file name without extension).
    #[arg(long)]
    pub name: Option<String>,
    /// Bind a route: `'METHOD /exec/path/{param}'` or `'/exec/path'` for any method.
    #[arg(long)]
    pub route: Option<String>,
    /// Browser origins allowed to call the script (repeatable).
    #[arg(long = "cors-origin")]
    pub cors_origins: Vec<String>,
}

/// `picloud invoke NAME`.
#[derive(clap::Args, Debug)]
pub struct InvokeArgs {
    pub name: String,
    /// HTTP method.
    #[arg(short = 'X', long, default_value = "POST")]
    pub method: String,
    /// Request body: text, or `@file` to read a file (`@-` for standard input).
    #[arg(short, long)]
    pub data: Option<String>,
    /// Request header `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Query string, e.g. `name=Ada&x=1`.
    #[arg(short, long)]
    pub query: Option<String>,
}

pub async fn deploy(conn: &Connection, args: DeployArgs) -> anyhow::Result<()> {
    let client = Client::new(conn)?;
    let source = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let name = match args.name {
        Some(n) => n,
        None => default_name(&args.file)?,
    };
    let mut body = json!({ "source": source });
    if let Some(route) = &args.route {
        body["route"] = json!(route);
    }
    if !args.cors_origins.is_empty() {
        body["cors_origins"] = json!(args.cors_origins);
    }
    let exists = client
        .send(client.admin(Method::GET, &format!("/scripts/{name}"))?)
        .await?
        .status()
        .is_success();
    let script: Value = if exists {
        client
            .json(
                client
                    .admin(Method::PUT, &format!("/scripts/{name}"))?
                    .json(&body),
            )
            .await?
    } else {
        body["name"] = json!(name);
        client
            .json(client.admin(Method::POST, "/scripts")?.json(&body))
            .await?
    };
    if conn.json {
        return print_json(&script);
    }
    println!(
        "{} {} version {} ({})",
        if exists { "updated" } else { "created" },
        script["name"].as_str().unwrap_or(&name),
        script["version"],
        script["id"].as_str().unwrap_or("?"),
    );
    if let Some(route) = script.get("route").filter(|r| !r.is_null()) {
        println!(
            "route: {} {}{}",
            route["method"].as_str().unwrap_or("ANY"),
            client.url(""),
            route["path"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// A script name from a file name: `Hello World.rhai` → `hello-world`.
fn default_name(file: &Path) -> anyhow::Result<String> {
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .context("the file name is not text; pass --name")?;
    let name: String = stem
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = name
        .trim_start_matches(['-', '_'])
        .chars()
        .take(64)
        .collect::<String>();
    if name.is_empty() {
        bail!(
            "cannot make a script name from {}; pass --name",
            file.display()
        );
    }
    Ok(name)
}

pub async fn list(conn: &Connection) -> anyhow::Result<()> {
    let client = Client::new(conn)?;
    let scripts: Vec<Value> = client.json(client.admin(Method::GET, "/scripts")?).await?;
    if conn.json {
        return print_json(&Value::Array(scripts));
    }
    let rows = scripts
        .iter()
        .map(|s| {
            vec![
                text(&s["name"]),
                s["version"].to_string(),
                route_text(&s["route"]),
                text(&s["updated_at"]),
                text(&s["id"]),
            ]
        })
        .collect::<Vec<_>>();
    print_table(&["NAME", "VERSION", "ROUTE", "UPDATED", "ID"], &rows);
    Ok(())
}

pub async fn show(conn: &Connection, name: &str) -> anyhow::Result<()> {
    let client = Client::new(conn)?;
    let s: Value = client
        .json(client.admin(Method::GET, &format!("/scripts/{name}"))?)
        .await?;
    if conn.json {
        return print_json(&s);
    }
    println!("name:     {}", text(&s["name"]));
    println!("id:       {}", text(&s["id"]));
    println!("version:  {}", s["version"]);
    println!("route:    {}", route_text(&s["route"]));
    println!("updated:  {}", text(&s["updated_at"]));
    if let Some(limits) = s["limits"].as_object().filter(|l| !l.is_empty()) {
        let own: Vec<String> = limits.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("limits:   {}", own.join(", "));
    }
    println!("---");
    println!("{}", s["source"].as_str().unwrap_or_default());
    Ok(())
}

pub async fn invoke(conn: &Connection, args: InvokeArgs) -> anyhow::Result<()> {
    let client = Client::new(conn)?;
    let script: Value = client
        .json(client.admin(Method::GET, &format!("/scripts/{}", args.name))?)
        .await?;
    let id = script["id"]
        .as_str()
        .context("the server sent a script without an id")?;
    let method = Method::from_bytes(args.method.to_ascii_uppercase().as_bytes())
        .with_context(|| format!("`{}` is not an HTTP method", args.method))?;
    let mut path = format!("/api/execute/{id}");
    if let Some(q) = &args.query {
        path.push('?');
        path.push_str(q.trim_start_matches('?'));
    }
    let mut request = client.public(method, &path);
    for h in &args.headers {
        let (k, v) = h
            .split_once(':')
            .with_context(|| format!("header `{h}` must look like `Name: value`"))?;
        request = request.header(k.trim(), v.trim());
    }
    if let Some(data) = &args.data {
        request = request.body(read_data(data)?);
    }
    let response = client.send(request).await?;
    let status = response.status();
    let headers: serde_json::Map<String, Value> = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), json!(String::from_utf8_lossy(v.as_bytes()))))
        .collect();
    let body = response.bytes().await.context("reading the response")?;
    if conn.json {
        print_json(&json!({
            "status": status.as_u16(),
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        }))?;
    } else if status.is_success() {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        out.write_all(&body)?;
        if !body.ends_with(b"\n") && !body.is_empty() {
            out.write_all(b"\n")?;
        }
    }
    if !status.is_success() {
        let id = headers
            .get("x-picloud-invocation-id")
            .and_then(Value::as_str)
            .unwrap_or("?");
        bail!(
            "{} (invocation {id})",
            describe_error(status, &String::from_utf8_lossy(&body))
        );
    }
    Ok(())
}

fn read_data(data: &str) -> anyhow::Result<Vec<u8>> {
    match data.strip_prefix('@') {
        Some("-") => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
            Ok(buf)
        }
        Some(file) => std::fs::read(file).with_context(|| format!("reading {file}")),
        None => Ok(data.as_bytes().to_vec()),
    }
}

pub async fn versions(conn: &Connection, name: &str) -> anyhow::Result<()> {
    let client = Client::new(conn)?;
    let history: Value = client
        .json(client.admin(Method::GET, &format!("/scripts/{name}/versions"))?)
        .await?;
    if conn.json {
        return print_json(&history);
    }
    let current = history["current"].as_u64();
    let rows = history["versions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|v| {
            let n = v["version"].as_u64();
            vec![
                format!("{}{}", v["version"], if n == current { " *" } else { "" }),
                text(&v["content_hash"]).chars().take(12).collect(),
                text(&v["created_at"]),
                v["restored_from"]
                    .as_u64()
                    .map(|r| format!("rollback to {r}"))
                    .unwrap_or_default(),
            ]
        })
        .collect::<Vec<_>>();
    print_table(&["VERSION", "HASH", "CREATED", "NOTE"], &rows);
    Ok(())
}

pub async fn rollback(conn: &Connection, name: &str, version: u32) -> anyhow::Result<()> {
    let client = Client::new(conn)?;
    let s: Value = client
        .json(
            client
                .admin(Method::POST, &format!("/scripts/{name}/rollback"))?
                .json(&json!({ "version": version })),
        )
        .await?;
    if conn.json {
        return print_json(&s);
    }
    println!(
        "{} is now version {} (the content of version {version})",
        text(&s["name"]),
        s["version"]
    );
    Ok(())
}

pub async fn remove(conn: &Connection, name: &str) -> anyhow::Result<()> {
    let client = Client::new(conn)?;
    client
        .empty(client.admin(Method::DELETE, &format!("/scripts/{name}"))?)
        .await?;
    if conn.json {
        return print_json(&json!({ "deleted": name }));
    }
    println!("deleted {name}");
    Ok(())
}

pub async fn logs(conn: &Connection, name: &str, follow: bool, limit: u32) -> anyhow::Result<()> {
    let client = Client::new(conn)?;
    let page: Value = client
        .json(client.admin(
            Method::GET,
            &format!("/scripts/{name}/invocations?limit={limit}"),
        )?)
        .await?;
    let mut records: Vec<Value> = page
        .get("invocations")
        .or(Some(&page))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    records.reverse(); // oldest first, like a log
    for r in &mut records {
        // Listings carry a count of log lines; the lines come with the record itself.
        if r["log_lines"].as_u64().unwrap_or(0) > 0
            && let Some(id) = r["id"].as_str()
        {
            *r = client
                .json(client.admin(Method::GET, &format!("/invocations/{id}"))?)
                .await?;
        }
        print_record(conn.json, r)?;
    }
    if !follow {
        return Ok(());
    }
    let response = client
        .send(client.admin(Method::GET, &format!("/scripts/{name}/invocations/stream"))?)
        .await?;
    let response = crate::client::fail_unless_ok(response).await?;
    let mut stream = response.bytes_stream();
    let mut buf = String::new();
    while let Some(chunk) = stream.next().await {
        buf.push_str(&String::from_utf8_lossy(
            &chunk.context("the event stream broke")?,
        ));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let data: String = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect::<Vec<_>>()
                .join("\n");
            if let Ok(record) = serde_json::from_str::<Value>(&data) {
                print_record(conn.json, &record)?;
            }
        }
    }
    Ok(())
}

fn print_record(as_json: bool, r: &Value) -> anyhow::Result<()> {
    if as_json {
        println!("{}", serde_json::to_string(r)?);
        return Ok(());
    }
    let stats = &r["stats"];
    let line = format!(
        "{}  {}  v{}  {} {}  {} {}  wall {} µs  cpu {} µs  {}",
        text(&r["started_at"]),
        text(&r["id"]),
        text(&r["script_version"]),
        text(&r["method"]),
        text(&r["path"]),
        r["status"],
        text(&r["outcome"]),
        stats["wall_us"],
        stats["cpu_us"],
        r["error"].as_str().unwrap_or_default(),
    );
    println!("{}", line.trim_end());
    for line in r["logs"].as_array().map(Vec::as_slice).unwrap_or_default() {
        println!("    {}", line.as_str().unwrap_or_default());
    }
    Ok(())
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn route_text(route: &Value) -> String {
    if route.is_null() {
        return "-".to_owned();
    }
    format!(
        "{} {}",
        route["method"].as_str().unwrap_or("ANY"),
        text(&route["path"])
    )
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Left-aligned columns, two spaces apart.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            let _ = write!(out, "{cell:<w$}");
        }
        println!("{}", out.trim_end());
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_files() {
        assert_eq!(
            default_name(Path::new("dir/Hello World.rhai")).unwrap(),
            "hello-world"
        );
        assert_eq!(default_name(Path::new("_x.rhai")).unwrap(), "x");
        assert!(default_name(Path::new("---.rhai")).is_err());
    }
}

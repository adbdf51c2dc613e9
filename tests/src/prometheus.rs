//! Prometheus: a real server scraping the services, and reading a
//! `/metrics` text.

use std::fs;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use tempfile::TempDir;

use crate::process::{kill, system_binary};
use crate::{free_port, wait_http};

/// The value of the sample `name{labels…}` in Prometheus text output
/// (labels given must all match; others are ignored). 0 when absent.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())
            .flatten()
        })
        .sum()
}

/// Fetches `url` (a `/metrics` endpoint) as text.
pub async fn scrape(url: &str) -> String {
    reqwest::get(url)
        .await
        .expect("metrics endpoint")
        .text()
        .await
        .expect("metrics text")
}

/// A Prometheus server (the Debian package) scraping `jobs` every second,
/// with `rule_files` evaluated every second.
pub struct Prometheus {
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl Prometheus {
    /// `jobs`: (job name, `host:port`) pairs; `rule_files`: paths of rule files.
    pub async fn start(jobs: &[(&str, &str)], rule_files: &[&Path]) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        // JSON strings are YAML strings: no quoting issues with paths.
        let quote = |s: &str| serde_json::Value::from(s).to_string();
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nrule_files:\n",
        );
        for f in rule_files {
            config.push_str(&format!("  - {}\n", quote(&f.display().to_string())));
        }
        config.push_str("scrape_configs:\n");
        for (job, target) in jobs {
            config.push_str(&format!(
                "  - job_name: {}\n    static_configs:\n      - targets: [{}]\n",
                quote(job),
                quote(target)
            ));
        }
        let config_path = dir.path().join("prometheus.yml");
        fs::write(&config_path, config).expect("prometheus.yml");
        let log = fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(system_binary("prometheus"))
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .current_dir(dir.path())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("starting prometheus");
        let prometheus = Prometheus {
            port,
            dir,
            child: Some(child),
        };
        if let Err(e) = wait_http(
            &format!("{}/-/ready", prometheus.url()),
            Duration::from_secs(60),
        )
        .await
        {
            panic!("{e}\n--- prometheus log ---\n{}", prometheus.log_text());
        }
        prometheus
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An instant query (`/api/v1/query`): the `data` object
    /// (`resultType`, `result`), or the server's error.
    pub async fn query(&self, expr: &str) -> anyhow::Result<serde_json::Value> {
        let r = reqwest::Client::new()
            .post(format!("{}/api/v1/query", self.url()))
            .form(&[("query", expr)])
            .send()
            .await?;
        let body: serde_json::Value = r.json().await?;
        if body["status"] != "success" {
            anyhow::bail!(
                "{}: {}",
                body["errorType"].as_str().unwrap_or("error"),
                body["error"].as_str().unwrap_or("no error message")
            );
        }
        Ok(body["data"].clone())
    }

    /// `GET /api/v1/<path>`: the `data` of a successful answer.
    pub async fn api(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let body: serde_json::Value = reqwest::get(format!("{}/api/v1/{path}", self.url()))
            .await?
            .json()
            .await?;
        if body["status"] != "success" {
            anyhow::bail!("{path}: {body}");
        }
        Ok(body["data"].clone())
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- log of prometheus ---\n{}", self.log_text());
        }
        kill(&mut self.child);
    }
}

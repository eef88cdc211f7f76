//! The command line's Kubernetes flags, as one clap group, so the gateway's
//! `RunArgs` takes them with a single feature-gated `#[command(flatten)]`.

use clap::Args;

use super::{KubernetesSource, PortSelector};
use crate::config::ConfigError;

/// `--kube-service NAME [--kube-namespace NS] [--kube-port NAME|NUMBER]`:
/// feed a route's backends from a Service's EndpointSlices.
#[derive(Clone, Debug, Default, Args)]
pub struct KubeArgs {
    /// Feed the route's backends from this Kubernetes Service's
    /// EndpointSlices: its pods, drained as they terminate.
    #[arg(long, value_name = "NAME")]
    pub kube_service: Option<String>,
    /// The Service's namespace (default: the gateway pod's own, from its
    /// service account).
    #[arg(long, value_name = "NS", requires = "kube_service")]
    pub kube_namespace: Option<String>,
    /// The pods' port, by the Service port's name or the pod's port number
    /// (default: the only TCP port).
    #[arg(long, value_name = "NAME|NUMBER", requires = "kube_service", value_parser = parse_port)]
    pub kube_port: Option<PortSelector>,
}

fn parse_port(s: &str) -> Result<PortSelector, String> {
    s.parse()
}

impl KubeArgs {
    /// The source these flags ask for, with a client configured the usual
    /// way ([`KubernetesSource::infer`]); `Ok(None)` without
    /// `--kube-service`.
    pub async fn source(&self) -> Result<Option<KubernetesSource>, ConfigError> {
        let Some(service) = self.kube_service.as_deref() else {
            return Ok(None);
        };
        let port = self.kube_port.clone().unwrap_or_default();
        KubernetesSource::infer(self.kube_namespace.as_deref(), service, port)
            .await
            .map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        kube: KubeArgs,
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::try_parse_from([
            "gw",
            "--kube-service",
            "web",
            "--kube-namespace",
            "shop",
            "--kube-port",
            "8080",
        ])
        .unwrap();
        assert_eq!(cli.kube.kube_service.as_deref(), Some("web"));
        assert_eq!(cli.kube.kube_namespace.as_deref(), Some("shop"));
        assert_eq!(cli.kube.kube_port, Some(PortSelector::Number(8080)));
        let cli = Cli::try_parse_from(["gw", "--kube-service=web", "--kube-port=http"]).unwrap();
        assert_eq!(cli.kube.kube_port, Some(PortSelector::Name("http".into())));
        assert!(
            Cli::try_parse_from(["gw", "--kube-port", "http"]).is_err(),
            "needs a service"
        );
        assert!(Cli::try_parse_from(["gw", "--kube-service=web", "--kube-port=0"]).is_err());
    }
}

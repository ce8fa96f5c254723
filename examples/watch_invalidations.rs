//! A small upcall client: watches a resource of a service and prints each invalidation.
//!
//! ```sh
//! cargo run --example watch_invalidations -- nfs /srv/export
//! ```
//!
//! The `Invalidate` signals are unicast: they reach this connection only, because it is
//! the one that called `Watch`. So the watch and the listening share one connection.

use futures_util::StreamExt;
use zbus::message::Type;
use zbus::{Connection, MatchRule, MessageStream};

#[tokio::main(flavor = "current_thread")]
async fn main() -> zbus::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(service), Some(resource)) = (args.next(), args.next()) else {
        eprintln!("usage: watch_invalidations SERVICE RESOURCE");
        std::process::exit(2);
    };
    let connection = Connection::system().await?;
    let rule = MatchRule::builder()
        .msg_type(Type::Signal)
        .interface("org.corral.Corral1.Upcall")
        .member("Invalidate")
        .build()?;
    let mut signals = MessageStream::for_match_rule(rule, &connection, None).await?;
    connection
        .call_method(
            Some("org.corral.Corral1"),
            "/org/corral/Corral1",
            Some("org.corral.Corral1.Upcall"),
            "Watch",
            &(service.as_str(), resource.as_str()),
        )
        .await?;
    println!("watching {service}:{resource}");
    while let Some(message) = signals.next().await {
        let (service, resource, attrs): (String, String, Vec<String>) =
            message?.body().deserialize()?;
        println!("invalidate {service}:{resource} {attrs:?}");
    }
    Ok(())
}

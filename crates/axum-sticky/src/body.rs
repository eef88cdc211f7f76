//! A response body that keeps its request counted in flight on its backend
//! (or replica) until the body ends, fails or is dropped, as sticky-gateway
//! does: least-loaded placement counts requests whose answers are still
//! streaming, not only those waiting for a head.

use std::any::Any;

use axum::body::Body;
use bytes::Bytes;
use tower_sticky::service::InFlightBody;
use tower_sticky::table::InFlight;

/// The response body for the client: `body`, counted in flight with
/// `in_flight` until it ends. One allocation (axum's boxed body), none more:
/// sticky-proxy's body is wrapped as it is; another client's body is boxed
/// first only when it is not axum's `Body` already, and a body that has
/// ended already is not wrapped at all.
pub(crate) fn counted<B>(body: B, in_flight: Option<InFlight>) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let Some(in_flight) = in_flight.filter(|_| !body.is_end_stream()) else {
        return Body::new(body);
    };
    let mut body = Some(body);
    let any: &mut dyn Any = &mut body;
    if let Some(b) = any.downcast_mut::<Option<sticky_proxy::ResponseBody>>() {
        let body = b.take().expect("the body is there");
        return Body::new(InFlightBody::new(body, Some(in_flight)));
    }
    let body = Body::new(body.take().expect("the body is there"));
    Body::new(InFlightBody::new(body, Some(in_flight)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Frame;
    use http_body_util::BodyExt;
    use tower_sticky::table::BackendTable;
    use tower_sticky::{Engine, StickyConfig};

    #[tokio::test]
    async fn the_request_is_in_flight_until_its_body_ends_or_drops() {
        let engine = Engine::new(StickyConfig::new(tower_sticky::token::KeyRing::generate()));
        let mut table = BackendTable::<&'static str>::new();
        table.insert("a", (), 1).unwrap();
        let in_flight = || table.get(0).unwrap().status().in_flight();
        let req = http::Request::new(()).into_parts().0;

        let mut routed = engine.decide(&table, &req, |_| true);
        assert!(routed.begin(&engine, &table));
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
        let stream =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|f| (f, rx)) },
            );
        let mut body = counted(
            http_body_util::StreamBody::new(stream),
            routed.take_in_flight(),
        );
        drop(routed);
        assert_eq!(in_flight(), 1, "counted while the body streams");
        tx.send(Ok(Frame::data(Bytes::from_static(b"x"))))
            .await
            .unwrap();
        assert!(body.frame().await.is_some());
        assert_eq!(in_flight(), 1);
        drop(tx);
        assert!(body.frame().await.is_none());
        assert_eq!(in_flight(), 0, "released at the end");

        let mut routed = engine.decide(&table, &req, |_| true);
        routed.begin(&engine, &table);
        let body = counted(Body::from("unread"), routed.take_in_flight());
        drop(routed);
        assert_eq!(in_flight(), 1);
        drop(body);
        assert_eq!(in_flight(), 0, "released when dropped unread");
    }
}

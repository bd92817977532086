//! The websocket half of a headless client.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::signal::protocol::{ClientMessage, ServerMessage};

#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("websocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("timed out waiting for {0}")]
    Timeout(String),
    #[error("connection closed")]
    Closed,
    #[error("undecodable server message: {0}")]
    Decode(String),
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
/// The sending half of a split signaling connection.
pub type WsSink = futures::stream::SplitSink<Ws, Message>;
/// The receiving half of a split signaling connection.
pub type WsStream = futures::stream::SplitStream<Ws>;

/// A raw signaling connection: send client messages, receive server messages.
pub struct SignalClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl SignalClient {
    pub async fn connect(url: &str) -> Result<Self, SignalError> {
        let (ws, _) = tokio_tungstenite::connect_async(url).await?;
        Ok(Self { ws })
    }

    pub async fn send(&mut self, msg: &ClientMessage) -> Result<(), SignalError> {
        let text = serde_json::to_string(msg).map_err(|e| SignalError::Decode(e.to_string()))?;
        self.send_raw(text).await
    }

    /// Sends any text, valid or not (for protocol tests).
    pub async fn send_raw(&mut self, text: String) -> Result<(), SignalError> {
        self.ws.send(Message::Text(text.into())).await?;
        Ok(())
    }

    /// The next server message, or `None` when the socket closed.
    pub async fn recv(&mut self) -> Result<Option<ServerMessage>, SignalError> {
        loop {
            match self.ws.next().await {
                None | Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Ok(Message::Text(t))) => {
                    return serde_json::from_str(t.as_str()).map(Some).map_err(|e| SignalError::Decode(format!("{e}: {t}")));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// Waits (bounded) for the first message matching `pred`, dropping others.
    pub async fn recv_until<F>(&mut self, what: &str, wait: Duration, mut pred: F) -> Result<ServerMessage, SignalError>
    where
        F: FnMut(&ServerMessage) -> bool,
    {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.recv())
                .await
                .map_err(|_| SignalError::Timeout(what.to_string()))??
                .ok_or(SignalError::Closed)?;
            if pred(&msg) {
                return Ok(msg);
            }
        }
    }

    pub fn into_split(self) -> (WsSink, WsStream) {
        self.ws.split()
    }
}

//! A DNS server on loopback that answers SRV queries from a table: for the SDK's lookup of
//! the account's server (RFC 6120 §3.2, XEP-0368; crates/corvid-client/tests/corvid.rs),
//! and for a real ejabberd's lookup of Corvid's s2s port
//! (crates/corvid-server/tests/s2s_ejabberd.rs). Each test binary includes it by path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Result;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::SRV;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// SRV records by name, with the final dot (`_xmpp-client._tcp.localhost.`): (priority,
/// weight, port, target).
pub type Records = HashMap<String, Vec<(u16, u16, u16, String)>>;

pub struct DnsServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DnsServer {
    /// Answers SRV queries for the names in `records`; any other name does not exist.
    pub async fn start(records: Records) -> Result<DnsServer> {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let addr = socket.local_addr()?;
        let task = tokio::spawn(async move {
            let mut buf = vec![0; 4096];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                if let Some(answer) = answer(&query, &records)
                    && let Ok(bytes) = answer.to_vec()
                {
                    let _ = socket.send_to(&bytes, from).await;
                }
            }
        });
        Ok(DnsServer { addr, task })
    }
}

fn answer(query: &Message, records: &Records) -> Option<Message> {
    let question = query.queries.first()?;
    let mut answer = Message::response(query.metadata.id, OpCode::Query);
    answer.metadata.message_type = MessageType::Response;
    answer.metadata.authoritative = true;
    answer.metadata.recursion_desired = query.metadata.recursion_desired;
    answer.add_query(question.clone());
    let name = question.name().to_ascii();
    match records.get(&name) {
        Some(found) if question.query_type() == RecordType::SRV => {
            for (priority, weight, port, target) in found {
                let target = Name::from_ascii(target).ok()?;
                let srv = SRV::new(*priority, *weight, *port, target);
                answer.add_answer(Record::from_rdata(
                    question.name().clone(),
                    60,
                    RData::SRV(srv),
                ));
            }
        }
        Some(_) => {}
        None => answer.metadata.response_code = ResponseCode::NXDomain,
    }
    Some(answer)
}

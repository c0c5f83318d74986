//! Step 7: a MUC room (XMPPRoom, XEP-0045): join it (creating an instant room if it is
//! new), say hello, show the occupants and, as its owner, the member, admin and owner
//! lists; then print what is said until someone else speaks, and leave.
//!
//! ```sh
//! cargo run -p corvid-client --example room -- verona@conference.localhost juliet
//! ```

mod common;

use corvid_client::{Affiliation, JoinOptions, Muc, RoomError, RoomEvent, RoomMessage};

#[tokio::main]
async fn main() -> common::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [room_jid, nick] = args.as_slice() else {
        return Err("usage: room ROOM NICK".into());
    };
    let (client, _events) = common::builder()?.build();
    let (muc, _invitations) = Muc::attach(&client);
    client.connect().await?;
    let (room, mut room_events) = muc.room(room_jid.parse()?, nick);
    // Joins; a new room is unlocked with the default configuration (an instant room).
    match room.create_instant(JoinOptions::default()).await {
        Ok(()) => println!("created {room_jid}"),
        Err(RoomError::AlreadyExists) => {}
        Err(e) => return Err(e.into()),
    }
    println!("joined {room_jid} as {}", room.nick());
    room.send_message("hello").await?;
    for occupant in room.occupants() {
        println!(
            "occupant {} role={} affiliation={}",
            occupant.nick,
            occupant.role.as_str(),
            occupant.affiliation.as_str()
        );
    }
    let own = room.occupant(&room.nick()).map(|o| o.affiliation);
    if own == Some(Affiliation::Owner) {
        for list in [Affiliation::Member, Affiliation::Admin, Affiliation::Owner] {
            let items = room.affiliations(list).await?;
            let jids: Vec<String> = items
                .iter()
                .filter_map(|i| i.jid.as_ref().map(ToString::to_string))
                .collect();
            println!("{} list: {}", list.as_str(), jids.join(", "));
        }
    }
    let me = room.nick();
    let said = tokio::time::timeout(common::WAIT, async {
        while let Some(event) = room_events.next().await {
            match event {
                RoomEvent::OccupantJoined(o) => println!("{} joined", o.nick),
                RoomEvent::Message(RoomMessage {
                    nick: Some(nick),
                    body: Some(body),
                    delayed: None,
                    ..
                }) if nick != me => return Some((nick, body)),
                _ => {}
            }
        }
        None
    })
    .await;
    match said {
        Ok(Some((nick, body))) => println!("{nick}: {body}"),
        _ => println!("nobody spoke"),
    }
    room.leave(None).await?;
    println!("left");
    client.disconnect().await;
    Ok(())
}

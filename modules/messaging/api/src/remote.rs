//! Remote mode: the messaging module's trait over HTTP, for when the module runs as its own
//! service (`[modules.messaging] mode = "remote"`). The client and the service's dispatcher are both
//! written by [`kernel::remote_trait!`] from the one list below, which must name every method of
//! the trait (the compiler refuses the client otherwise).

#![allow(clippy::too_many_arguments, unused_imports)]

use kernel::paging::{Page, PageRequest};
use kernel::remote::RemoteClient;
use kernel::{AccountId, AppResult, Caller};

use super::*;

/// The messaging module's trait, answered by its service.
pub struct MessagingClient {
    remote: RemoteClient,
    signal: std::sync::Arc<tokio::sync::Notify>,
}

impl MessagingClient {
    pub fn new(remote: RemoteClient) -> MessagingClient {
        MessagingClient {
            remote,
            signal: std::sync::Arc::new(tokio::sync::Notify::new()),
        }
    }
}

kernel::remote_trait! {
    impl Chats for MessagingClient, dispatch dispatch_chats, methods CHATS_METHODS {
            write fn send_to_deal(caller: Caller, deal: i64, text: &str as String, buttons: &[String] as Vec<String>) -> Queued;
    }
}

kernel::remote_trait! {
    impl Messaging for MessagingClient, dispatch dispatch_messaging, methods MESSAGING_METHODS {
            read fn channels(caller: Caller) -> Vec<Channel>;
            read fn channel(caller: Caller, id: i64) -> Channel;
            write fn create_channel(caller: Caller, new: NewChannel) -> Channel;
            write fn set_channel_active(caller: Caller, id: i64, active: bool) -> Channel;
            write fn delete_channel(caller: Caller, id: i64) -> ();
            read fn conversations(caller: Caller, filter: &ConversationFilter as ConversationFilter, page: PageRequest) -> Page<Conversation>;
            read fn conversation(caller: Caller, id: i64) -> Conversation;
            read fn conversation_of_deal(caller: Caller, deal: i64) -> Option<Conversation>;
            read fn messages(caller: Caller, conversation: i64, after: Option<i64>, limit: u32) -> Vec<Message>;
            write fn send(caller: Caller, conversation: i64, message: OutgoingMessage) -> Queued;
            write fn mark_read(caller: Caller, conversation: i64) -> ();
            read fn attachment(caller: Caller, id: i64) -> FileContent;
            read fn linked_attachment(id: i64, token: &str as String) -> FileContent;
            write fn link_deal(caller: Caller, conversation: i64, deal: Option<i64>) -> Conversation;
            read fn unread_conversations(caller: Caller) -> i64;
            read fn templates(caller: Caller) -> Vec<Template>;
            write fn save_template(caller: Caller, new: NewTemplate) -> Template;
            write fn delete_template(caller: Caller, id: i64) -> ();
            read fn notifications(caller: Caller, limit: u32) -> Vec<Notification>;
            read fn unread_notifications(caller: Caller) -> i64;
            write fn read_notifications(caller: Caller) -> ();
            write fn receive(inbound: Inbound) -> Received;
            write fn verify_subscription(provider: Provider, webhook_key: &str as String, mode: &str as String, verify_token: &str as String, challenge: &str as String) -> String;
            write fn take_due(limit: i64) -> Vec<Work>;
            write fn process(work: Work) -> ();
            write fn clean_up() -> usize;
            read fn account_channels(account: AccountId) -> Vec<Channel>;
    }
    extra {
        fn work_signal(&self) -> std::sync::Arc<tokio::sync::Notify> {
            // The service's own workers take its due work; nothing is due here.
            self.signal.clone()
        }
    }
}

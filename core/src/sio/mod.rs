//! Socket.IO protocol revisions 4 and 5: packets, binary attachments, namespaces and acks.

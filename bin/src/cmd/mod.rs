pub mod demo;
pub mod init;
pub mod run;
pub mod sign;
pub mod status;
pub mod submit;
pub mod wireguard;

pub mod demo;
pub mod run;
pub mod sign;
pub mod status;
pub mod submit;

//! acl: placeholder until the ACL file parser lands (being written now).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Subscribe,
    Unsubscribe,
}

pub struct AclFile;

impl AclFile {
    pub fn parse(_text: &str, _file_name: &str) -> Result<AclFile, String> {
        Err("ACL files are not supported yet".to_string())
    }
    pub fn load(_path: &std::path::Path) -> Result<AclFile, String> {
        Err("ACL files are not supported yet".to_string())
    }
    pub fn check(&self, _c: &str, _u: Option<&str>, _t: &str, _a: Access) -> bool {
        false
    }
}
